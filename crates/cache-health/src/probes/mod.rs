//! One probe per kind of target. Each returns a [`TargetReport`] and never an error: a failure
//! to reach the target is the report's content, not a reason to stop the check.

pub mod dirs;
pub mod http;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod system;

use std::future::Future;
use std::time::{Duration, Instant};

use cache_core::tier::Tier;

use crate::report::TargetReport;

/// Runs `probe` within `budget`; past it, the target is reported failed with what timed out.
pub async fn within_budget<F>(
    tier: Tier,
    name: &str,
    endpoint: Option<String>,
    budget: Duration,
    probe: F,
) -> TargetReport
where
    F: Future<Output = TargetReport>,
{
    let start = Instant::now();
    match tokio::time::timeout(budget, probe).await {
        Ok(report) => report,
        Err(_) => {
            let mut report = TargetReport::new(tier, name);
            report.endpoint = endpoint;
            report.latency_ms = Some(crate::report::round3(start.elapsed().as_secs_f64() * 1000.0));
            report.fail("probe", format!("no answer within {}", humantime_budget(budget)));
            report.recommendations.push(format!(
                "{}: the probe timed out; check that the server is up and not stalled (a full disk, a blocked event loop, a firewall dropping packets)",
                report.id()
            ));
            report
        }
    }
}

fn humantime_budget(d: Duration) -> String {
    cache_core::output::millis(d.as_secs_f64() * 1000.0)
}

/// The timed round trips of one check, each taken while the rest of the check is idle.
///
/// The probes of a check run in one task. While one of them works (a TLS handshake, parsing an
/// `INFO`), another's reply waits in its socket, and its round trip would count the toolkit's
/// own work as the target's latency. So a timed round trip waits until every probe that takes
/// one has connected, then takes its turn, one at a time; and each probe goes on with the rest
/// of its work once every round trip is timed. Each wait is capped ([`Stopwatch::timer`]): a
/// target slow to connect, or stalled in its turn, holds the others back that long at most and
/// never past their budget; a figure taken after a capped wait may then count some of the
/// toolkit's work, and is high, never low.
#[derive(Default)]
pub struct Stopwatch {
    counts: std::sync::Mutex<Counts>,
    changed: tokio::sync::Notify,
    turn: tokio::sync::Mutex<()>,
}

/// Timers not yet at their round trip, and not yet past it.
#[derive(Clone, Copy, Default)]
struct Counts {
    connecting: usize,
    timing: usize,
}

/// The longest a timer waits at each step, whatever its budget.
const MAX_WAIT: Duration = Duration::from_millis(250);

impl Stopwatch {
    /// A new stopwatch, with no timer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A timer for one probe, registered now (before any probe starts, so that none times its
    /// round trip before the others have connected). Its waits are capped at a quarter of the
    /// probe's `budget`, and at 250 ms.
    pub fn timer(&self, budget: Duration) -> Timer<'_> {
        self.update(|c| {
            c.connecting += 1;
            c.timing += 1;
        });
        Timer { stopwatch: self, cap: (budget / 4).min(MAX_WAIT), arrived: false, done: false }
    }

    fn update(&self, change: impl FnOnce(&mut Counts)) {
        change(&mut self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.changed.notify_waiters();
    }

    fn counts(&self) -> Counts {
        *self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until `ready` holds, or `cap` has passed.
    async fn wait(&self, ready: impl Fn(Counts) -> bool, cap: Duration) {
        let deadline = tokio::time::Instant::now() + cap;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the counts are read: a change in between is not missed.
            changed.as_mut().enable();
            if ready(self.counts()) || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

/// One probe's place in a [`Stopwatch`]. Dropped unused (the probe failed before its round
/// trip, or ran out of budget), it lets the others go on.
pub struct Timer<'a> {
    stopwatch: &'a Stopwatch,
    cap: Duration,
    arrived: bool,
    done: bool,
}

impl Timer<'_> {
    /// Runs `round_trip` in its turn, once the other probes have connected, and returns its
    /// output and how long it took; returns once the other round trips are timed too.
    pub async fn time<T>(&mut self, round_trip: impl Future<Output = T>) -> (T, Duration) {
        self.arrive();
        let stopwatch = self.stopwatch;
        stopwatch.wait(|c| c.connecting == 0, self.cap).await;
        let turn = tokio::time::timeout(self.cap, stopwatch.turn.lock()).await.ok();
        let start = tokio::time::Instant::now();
        let output = round_trip.await;
        let took = start.elapsed();
        drop(turn);
        self.finish();
        stopwatch.wait(|c| c.timing == 0, self.cap).await;
        (output, took)
    }

    fn arrive(&mut self) {
        if !std::mem::replace(&mut self.arrived, true) {
            self.stopwatch.update(|c| c.connecting -= 1);
        }
    }

    fn finish(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.stopwatch.update(|c| c.timing -= 1);
        }
    }
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.arrive();
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::{Instant, sleep};

    use super::*;

    /// When each step happened, in milliseconds after `t0`.
    struct Log {
        t0: Instant,
        events: Mutex<Vec<(&'static str, u128)>>,
    }

    impl Log {
        fn new() -> Self {
            Self { t0: Instant::now(), events: Mutex::new(Vec::new()) }
        }
        fn mark(&self, event: &'static str) {
            self.events.lock().unwrap().push((event, self.t0.elapsed().as_millis()));
        }
        fn at(&self, event: &str) -> u128 {
            self.events.lock().unwrap().iter().find(|(e, _)| *e == event).unwrap_or_else(|| panic!("no {event}")).1
        }
    }

    const BUDGET: Duration = Duration::from_secs(4);

    #[tokio::test(start_paused = true)]
    async fn round_trips_wait_for_every_probe_to_connect_take_turns_and_the_rest_waits_for_them() {
        let stopwatch = Stopwatch::new();
        let log = Log::new();
        let (mut a, mut b) = (stopwatch.timer(BUDGET), stopwatch.timer(BUDGET));
        let probe_a = async {
            let ((), took) = a
                .time(async {
                    log.mark("a timed");
                    sleep(Duration::from_millis(20)).await;
                    log.mark("a answered");
                })
                .await;
            assert_eq!(took.as_millis(), 20);
            log.mark("a goes on");
        };
        let probe_b = async {
            // Connecting takes b 50 ms.
            sleep(Duration::from_millis(50)).await;
            b.time(async {
                log.mark("b timed");
                sleep(Duration::from_millis(20)).await;
                log.mark("b answered");
            })
            .await;
            log.mark("b goes on");
        };
        tokio::join!(probe_a, probe_b);
        // a, connected at once, times nothing until b has connected...
        assert!(log.at("a timed") >= 50, "{:?}", log.events.lock().unwrap());
        // ...the two round trips do not overlap...
        let (first, second) = if log.at("a timed") < log.at("b timed") { ("a", "b") } else { ("b", "a") };
        assert!(
            log.at(&format!("{second} timed")) >= log.at(&format!("{first} answered")),
            "{:?}",
            log.events.lock().unwrap()
        );
        // ...and neither goes on while the other's round trip is being timed.
        assert!(log.at("a goes on") >= log.at("b answered"), "{:?}", log.events.lock().unwrap());
        assert!(log.at("b goes on") >= log.at("a answered"), "{:?}", log.events.lock().unwrap());
        // No wait ran to its cap: 50 ms of connecting and two 20 ms round trips.
        assert_eq!(log.t0.elapsed().as_millis(), 90);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_gives_up_before_its_round_trip_lets_the_others_go_at_once() {
        let stopwatch = Stopwatch::new();
        let log = Log::new();
        let mut a = stopwatch.timer(BUDGET);
        let b = stopwatch.timer(BUDGET);
        let probe_a = async {
            a.time(async { log.mark("a timed") }).await;
        };
        let probe_b = async {
            // b fails to connect after 30 ms: its timer goes with it.
            sleep(Duration::from_millis(30)).await;
            drop(b);
        };
        tokio::join!(probe_a, probe_b);
        assert_eq!(log.at("a timed"), 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_slow_to_connect_or_stalled_in_its_turn_holds_the_others_for_the_cap_only() {
        let cap = MAX_WAIT.as_millis();
        // A target that never connects within its budget.
        let stopwatch = Stopwatch::new();
        let log = Log::new();
        let (mut a, b) = (stopwatch.timer(BUDGET), stopwatch.timer(BUDGET));
        let probe_a = async {
            a.time(async { log.mark("a timed") }).await;
            log.mark("a goes on");
        };
        let probe_b = tokio::time::timeout(BUDGET, async move {
            let _b = b;
            std::future::pending::<()>().await;
        });
        let (_, timed_out) = tokio::join!(probe_a, probe_b);
        assert!(timed_out.is_err());
        assert_eq!(log.at("a timed"), cap);
        // b never timed: a waited the cap once more after its round trip, well within its budget.
        assert_eq!(log.at("a goes on"), 2 * cap);

        // A target stalled in its turn: a, the last to connect, takes the first turn.
        let stopwatch = Stopwatch::new();
        let log = Log::new();
        let (mut a, mut b) = (stopwatch.timer(BUDGET), stopwatch.timer(BUDGET));
        let probe_a = tokio::time::timeout(BUDGET, async {
            sleep(Duration::from_millis(1)).await;
            a.time(async {
                log.mark("a timed");
                std::future::pending::<()>().await;
            })
            .await;
        });
        let probe_b = async {
            b.time(async { log.mark("b timed") }).await;
            log.mark("b goes on");
        };
        let (timed_out, ()) = tokio::join!(probe_a, probe_b);
        assert!(timed_out.is_err());
        assert_eq!(log.at("a timed"), 1);
        assert_eq!(log.at("b timed"), 1 + cap);
        assert_eq!(log.at("b goes on"), 1 + 2 * cap);
    }

    #[test]
    fn a_short_budget_caps_the_waits_at_a_quarter_of_it() {
        let stopwatch = Stopwatch::new();
        assert_eq!(stopwatch.timer(Duration::from_millis(200)).cap, Duration::from_millis(50));
        assert_eq!(stopwatch.timer(Duration::from_secs(10)).cap, MAX_WAIT);
    }
}
