//! The alert engine on hand-made rounds: `for`, cooldown, resolved, acknowledgement, silence.

use super::*;

fn rule(condition: &str, for_rounds: u32) -> AlertRule {
    AlertRule {
        name: "Low Hit Ratio".into(),
        condition: condition.into(),
        severity: Severity::Warning,
        channels: vec![],
        message: "hit ratio of {target} at {hit_ratio:.1%}".into(),
        runbook_url: None,
        for_rounds,
        cooldown: None,
        send_resolved: true,
        auto_action: None,
        tiers: Vec::new(),
    }
}

fn obs(hit: f64) -> Vec<Observation> {
    vec![Observation {
        target: "redis/main".into(),
        metrics: [(cache_core::alerting::Metric::HitRatio, hit)].into(),
        unavailable: false,
        degraded: false,
    }]
}

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").unwrap().to_utc() + chrono::Duration::minutes(minutes)
}

fn kinds(n: &[Notice]) -> Vec<Kind> {
    n.iter().map(|n| n.kind).collect()
}

#[test]
fn fires_on_the_third_bad_round_repeats_after_the_cooldown_and_resolves_once() {
    let settings = AlertSettings::default();
    let rules = [rule("hit_ratio < 70%", 3)];
    let mut book = Book::default();
    let round =
        |hit: f64, minute: i64, book: &mut Book| evaluate(book, &rules, &settings, &obs(hit), &[], at(minute)).0;
    assert!(round(0.5, 0, &mut book).is_empty());
    assert!(round(0.5, 1, &mut book).is_empty());
    let n = round(0.5, 2, &mut book);
    assert_eq!(kinds(&n), [Kind::Firing]);
    assert_eq!(n[0].alert.message, "hit ratio of redis/main at 50.0%");
    assert_eq!(n[0].channels, ["log"]);
    // Within the 30-minute cooldown: nothing; past it: one repeat.
    assert!(round(0.5, 20, &mut book).is_empty());
    assert_eq!(kinds(&round(0.4, 33, &mut book)), [Kind::Repeat]);
    assert!(round(0.4, 40, &mut book).is_empty());
    // Recovered: one resolved notice, then silence.
    let n = round(0.9, 41, &mut book);
    assert_eq!(kinds(&n), [Kind::Resolved]);
    assert_eq!(n[0].alert.status, AlertStatus::Resolved);
    assert!(round(0.9, 42, &mut book).is_empty());
    // A pending alert that recovers before `for` leaves nothing.
    round(0.5, 50, &mut book);
    round(0.9, 51, &mut book);
    assert!(book.alerts.is_empty(), "{book:#?}");
    assert_eq!(book.round, 10);
}

#[test]
fn acknowledged_alerts_stop_repeating_and_silenced_rules_send_nothing() {
    let settings = AlertSettings::default();
    let rules = [rule("hit_ratio < 70%", 1)];
    let mut book = Book::default();
    assert_eq!(kinds(&evaluate(&mut book, &rules, &settings, &obs(0.5), &[], at(0)).0), [Kind::Firing]);
    book.alerts.values_mut().for_each(|a| a.acked = true);
    assert!(evaluate(&mut book, &rules, &settings, &obs(0.5), &[], at(90)).0.is_empty());
    let silenced = ["Low Hit Ratio".to_owned()];
    let (n, _) = evaluate(&mut book, &rules, &settings, &obs(0.9), &silenced, at(91));
    assert!(n.is_empty());
    assert_eq!(book.alerts.values().next().unwrap().status, AlertStatus::Resolved);
}

#[test]
fn global_rules_see_the_whole_system() {
    let settings = AlertSettings::default();
    let mut rules = vec![rule("all_tiers_unavailable", 1)];
    rules[0].message = "all down".into();
    let mut book = Book::default();
    let mut o = obs(0.9);
    o.push(Observation {
        target: "all".into(),
        metrics: cache_core::alerting::Figures::new(),
        unavailable: true,
        degraded: true,
    });
    let (n, fired) = evaluate(&mut book, &rules, &settings, &o, &[], at(0));
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].alert.target, "all");
    assert_eq!(fired.len(), 1);
}

#[test]
fn default_rules_are_valid() {
    for r in default_rules(&AlertSettings::default()) {
        cache_core::alerting::parse(&r.condition).unwrap();
        cache_core::alerting::check_template(&r.message).unwrap();
    }
}

#[test]
fn the_default_memory_rule_judges_redis_only_never_the_host() {
    let settings = AlertSettings::default();
    let rules: Vec<AlertRule> =
        default_rules(&settings).into_iter().filter(|r| r.name == "High Memory Usage").collect();
    assert_eq!(rules[0].auto_action, Some(AutoAction::TriggerCleanup));
    let full = |target: &str| Observation {
        target: target.into(),
        metrics: [(cache_core::alerting::Metric::MemoryUsage, 0.99)].into(),
        unavailable: false,
        degraded: false,
    };
    let observations = [full("system/host"), full("redis/main")];
    let mut book = Book::default();
    let (notices, fired) = evaluate(&mut book, &rules, &settings, &observations, &[], at(0));
    let targets: Vec<&str> = fired.iter().map(|(_, a)| a.target.as_str()).collect();
    assert_eq!(targets, ["redis/main"], "the host's memory fired a cache cleanup");
    assert_eq!(notices.len(), 1);
}

#[test]
fn a_ratio_compared_with_a_bare_percentage_is_refused() {
    let c = alerting::parse("hit_ratio < 70").unwrap();
    let e = alerting::check_ratios(&c).unwrap_err().to_string();
    assert!(e.contains("0.7") && e.contains("70%"), "{e}");
    for ok in ["hit_ratio < 70%", "hit_ratio < 0.7", "latency_ms > 50", "memory_usage > 80% and keys > 100"] {
        assert!(alerting::check_ratios(&alerting::parse(ok).unwrap()).is_ok(), "{ok}");
    }
}

#[test]
fn the_default_gpu_rule_fires_on_the_fifth_busy_round_and_a_quiet_round_starts_again() {
    let settings = AlertSettings::default();
    let rules: Vec<AlertRule> = default_rules(&settings).into_iter().filter(|r| r.name == "GPU Saturated").collect();
    assert_eq!(rules.len(), 1);
    let gpu = |util: f64| {
        vec![Observation {
            target: "system/gpu".into(),
            metrics: [(cache_core::alerting::Metric::GpuUtilization, util)].into(),
            unavailable: false,
            degraded: false,
        }]
    };
    // A GPU without NVML figures has no utilisation at all: never judged, never firing.
    let unknown =
        vec![Observation { target: "system/gpu".into(), metrics: Figures::new(), unavailable: false, degraded: false }];
    let mut book = Book::default();
    let mut round =
        |obs: &[Observation], minute: i64| kinds(&evaluate(&mut book, &rules, &settings, obs, &[], at(minute)).0);
    for minute in 0..4 {
        assert_eq!(round(&gpu(0.99), minute), []);
    }
    assert_eq!(round(&gpu(0.40), 4), [], "a quiet round starts the count again");
    for minute in 5..9 {
        assert_eq!(round(&gpu(0.97), minute), []);
    }
    assert_eq!(round(&gpu(0.95), 9), [Kind::Firing]);
    assert_eq!(round(&unknown, 10), [Kind::Resolved]);
    for minute in 11..20 {
        assert_eq!(round(&unknown, minute), []);
    }
}
