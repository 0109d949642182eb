//! Loopback helpers.

use std::net::{SocketAddr, TcpListener};

/// A free TCP port on 127.0.0.1 (bound and released; a small race is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A listener that never accepts: the kernel completes the handshake, then nothing answers.
pub struct Blackhole {
    listener: TcpListener,
}

impl Blackhole {
    /// Binds a blackhole on a free loopback port.
    pub fn new() -> Self {
        Self { listener: TcpListener::bind("127.0.0.1:0").unwrap() }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Self::new()
    }
}
