use super::*;

fn target(tier: Tier, name: &str, status: Status) -> TargetReport {
    let mut t = TargetReport::new(tier, name);
    t.check("probe", status, "x", None);
    t
}

#[test]
fn worst_status_wins_and_fine_statuses_do_not_raise() {
    assert_eq!(Status::Healthy.worst(Status::Failed), Status::Failed);
    assert_eq!(Status::Degraded.worst(Status::Healthy), Status::Degraded);
    assert_eq!(Status::NotAvailable.worst(Status::Healthy), Status::Healthy);
    assert_eq!(judge(85.0, Level { warn: 85.0, crit: 95.0 }), Status::Degraded);
    assert_eq!(judge(95.0, Level { warn: 85.0, crit: 95.0 }), Status::Failed);
    assert_eq!(judge(10.0, Level { warn: 85.0, crit: 95.0 }), Status::Healthy);
}

#[test]
fn assemble_counts_like_the_seed() {
    let now = Utc::now();
    let report = assemble(
        vec![target(Tier::Redis, "a", Status::Failed), target(Tier::System, "host", Status::Degraded)],
        &[Tier::Postgres, Tier::Memory],
        None,
        now,
        Duration::from_millis(5),
    );
    assert_eq!(report.status, Verdict::Critical);
    assert_eq!(report.overall_health, "critical");
    assert_eq!(report.critical_issues, 1);
    assert_eq!(report.warnings, 3);
    assert_eq!(report.systems["postgres"], Status::NotConfigured);
    assert_eq!(report.systems["redis"], Status::Failed);
    let ok = assemble(vec![target(Tier::Redis, "a", Status::Healthy)], &[Tier::Postgres], None, now, Duration::ZERO);
    assert_eq!(ok.status.exit_code(), 0);
}

#[test]
fn since_is_carried_while_status_holds() {
    let t0 = Utc::now() - chrono::Duration::hours(1);
    let first = assemble(vec![target(Tier::Redis, "a", Status::Healthy)], &[], None, t0, Duration::ZERO);
    let t1 = Utc::now();
    let same = assemble(vec![target(Tier::Redis, "a", Status::Healthy)], &[], Some(&first), t1, Duration::ZERO);
    assert_eq!(same.targets[0].since, Some(t0));
    assert_eq!(same.since, t0);
    let changed = assemble(vec![target(Tier::Redis, "a", Status::Failed)], &[], Some(&same), t1, Duration::ZERO);
    assert_eq!(changed.targets[0].since, Some(t1));
    assert_eq!(changed.since, t1);
}

#[test]
fn perf_renders_plugin_syntax() {
    let t = TargetReport::new(Tier::System, "host");
    let mut p = t.perf("disk /var lib", 45.5, "%");
    p.warn = Some(85.0);
    p.crit = Some(95.0);
    p.min = Some(0.0);
    p.max = Some(100.0);
    assert_eq!(p.render(), "'system_host_disk__var_lib'=45.5%;85;95;0;100");
    let mut q = t.perf("latency", 1.0, "ms");
    q.warn = Some(500.0);
    assert_eq!(q.render(), "'system_host_latency'=1ms;500");
    // A floor: WARNING under 70%, as `70:`.
    let r = t.perf("hit_ratio", 16.7, "%").range(0.0, Some(100.0)).floor(70.0);
    assert_eq!(r.render(), "'system_host_hit_ratio'=16.7%;70:;;0;100");
}
