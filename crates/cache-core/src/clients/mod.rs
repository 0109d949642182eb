//! Clients of the remote tiers, each with explicit timeouts.
//!
//! No call in the toolkit waits on the network without a bound: connects have their own
//! timeout, every response has one, and callers wrap whole probes in a budget too.

pub mod http;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod tls;
