//! Clients of the remote tiers, each with explicit timeouts.
//!
//! No call in the toolkit waits on the network without a bound: connects have their own
//! timeout, every response has one, and callers wrap whole probes in a budget too.

pub mod http;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod tls;
pub mod upstash;

/// Times up to `n` calls of `probe` (milliseconds each), stopping at the first failure, which
/// comes back with the samples taken before it. The latency sampler of analytics, health and
/// debug.
pub async fn time_calls<F, Fut, T, E>(n: usize, mut probe: F) -> (Vec<f64>, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = std::time::Instant::now();
        if let Err(e) = probe().await {
            return (samples, Some(e.to_string()));
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    (samples, None)
}
