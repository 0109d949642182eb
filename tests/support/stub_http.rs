//! A tiny HTTP server answering fixed routes, standing in for an application's `/health`.

use std::sync::Arc;
use std::thread::JoinHandle;

/// Serves `(path, status, json body)` routes; 404 otherwise. Stops on drop.
pub struct StubHttp {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl StubHttp {
    /// Starts serving `routes`.
    pub fn new(routes: Vec<(&'static str, u16, String)>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let thread = {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let (status, body) = routes
                        .iter()
                        .find(|(path, _, _)| *path == request.url())
                        .map(|(_, status, body)| (*status, body.clone()))
                        .unwrap_or((404, "{\"detail\":\"Not found\"}".into()));
                    let response = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header("Content-Type: application/json".parse::<tiny_http::Header>().unwrap());
                    let _ = request.respond(response);
                }
            })
        };
        Self { server, thread: Some(thread) }
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.server_addr().to_ip().unwrap())
    }
}

impl Drop for StubHttp {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
