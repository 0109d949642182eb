//! The host (load, memory, disks, directory sizes, systemd units, TCP endpoints) and its GPUs.

use cache_core::alerting::Metric;
use std::time::{Duration, Instant};

use cache_core::config::{HealthSettings, SystemSettings};
use cache_core::gpu::{self, GpuStatus};
use cache_core::output::bytes;
use cache_core::system::{self, UnitState};
use cache_core::tier::Tier;

use crate::report::{Status, TargetReport, judge, round3};

/// Probes the host as target `system/host`.
pub async fn host(settings: &SystemSettings, health: &HealthSettings) -> TargetReport {
    let start = Instant::now();
    let mut report = TargetReport::new(Tier::System, "host");
    report.endpoint = Some(system::hostname());
    // Leave a fifth of the budget for the rest of the probe once the directory walks stop.
    let deadline = start + settings.timeout.mul_f64(0.8);

    let blocking = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || {
            let host = system::host();
            let disks: Vec<_> = settings.disk_paths.iter().map(|p| (p.clone(), system::disk_usage(p))).collect();
            let dirs: Vec<_> = settings.directories.iter().map(|p| system::dir_usage(p, deadline)).collect();
            (host, disks, dirs)
        })
    };
    let units = futures::future::join_all(
        settings
            .systemd_units
            .iter()
            .map(|unit| async move { (unit, system::unit_state(unit, settings.timeout).await) }),
    );
    let connect_timeout = settings.timeout.min(Duration::from_secs(3));
    let endpoints = futures::future::join_all(
        settings
            .endpoints
            .iter()
            .map(|endpoint| async move { (endpoint, system::tcp_connect(endpoint, connect_timeout).await) }),
    );
    let (blocking, units, endpoints) = tokio::join!(blocking, units, endpoints);
    let Ok((host, disks, dirs)) = blocking else {
        report.fail("host", "the host probe panicked");
        return report;
    };

    match host {
        Ok(host) => {
            let per_cpu = host.load[0] / host.cpus as f64;
            if host.cpus > 0 {
                report.observe(Metric::LoadPerCpu, per_cpu);
            }
            report.observe(Metric::MemoryUsage, host.memory_percent / 100.0);
            let status = judge(per_cpu, health.load_per_cpu);
            let mut perf = report.perf("load1", round3(host.load[0]), "");
            (perf.warn, perf.crit, perf.min) = (
                Some(round3(health.load_per_cpu.warn * host.cpus as f64)),
                Some(round3(health.load_per_cpu.crit * host.cpus as f64)),
                Some(0.0),
            );
            report.check(
                "load",
                status,
                format!("load {:.2} {:.2} {:.2} on {} CPUs", host.load[0], host.load[1], host.load[2], host.cpus),
                Some(perf),
            );
            if status != Status::Healthy {
                report.recommendations.push(format!(
                    "system/host: load {:.2} per CPU; find the busy processes before heavy maintenance runs",
                    per_cpu
                ));
            }
            let status = judge(host.memory_percent, health.memory_percent);
            let perf = report.perf("memory", round3(host.memory_percent), "%").percent(health.memory_percent);
            report.check(
                "memory",
                status,
                format!("{} of {} ({:.1}%)", bytes(host.memory_used), bytes(host.memory_total), host.memory_percent),
                Some(perf),
            );
            if status != Status::Healthy {
                report.recommendations.push(format!(
                    "system/host: memory {:.1}% used; shrink caches (maxmemory, file caches) or add memory",
                    host.memory_percent
                ));
            }
            report.headline =
                format!("{} CPUs, load {:.2}, memory {:.1}%", host.cpus, host.load[0], host.memory_percent);
            report.metric("host", serde_json::to_value(&host).unwrap_or_default());
        }
        Err(e) => report.check("host", Status::Degraded, format!("cannot read CPU and memory: {e:#}"), None),
    }

    for (path, usage) in disks {
        let name = format!("disk {}", path.display());
        match usage {
            Ok(usage) => {
                let status = judge(usage.used_percent, health.disk_percent);
                let perf = report
                    .perf(&format!("disk_{}", path_label(&path)), round3(usage.used_percent), "%")
                    .percent(health.disk_percent);
                report.check(
                    &name,
                    status,
                    format!(
                        "{:.1}% used, {} free of {}",
                        usage.used_percent,
                        bytes(usage.available_bytes),
                        bytes(usage.total_bytes)
                    ),
                    Some(perf),
                );
                if status != Status::Healthy {
                    report.recommendations.push(format!(
                        "system/host: {} is {:.1}% full; rotate logs and clean file caches (cache-cleanup files, logs)",
                        path.display(),
                        usage.used_percent
                    ));
                }
            }
            Err(e) => report.check(&name, Status::Degraded, format!("{e:#}"), None),
        }
    }

    for usage in dirs {
        let name = format!("dir {}", usage.path.display());
        if !usage.exists {
            report.check(&name, Status::Degraded, "does not exist", None);
            continue;
        }
        let perf = report
            .perf(&format!("dir_{}", path_label(&usage.path)), usage.allocated_bytes as f64, "B")
            .range(0.0, None);
        let partial = if usage.complete { "" } else { " (walk stopped at the deadline; at least)" };
        report.check(
            &name,
            Status::Healthy,
            format!("{} in {} files{partial}", bytes(usage.allocated_bytes), usage.files),
            Some(perf),
        );
    }

    for (unit, state) in units {
        let name = format!("unit {unit}");
        match state {
            UnitState::Active => report.check(&name, Status::Healthy, "active", None),
            UnitState::NotActive(state) => {
                report.check(&name, Status::Failed, state.clone(), None);
                report.recommendations.push(format!(
                    "system/host: unit `{unit}` is {state}; see `systemctl status {unit}` and `journalctl -u {unit}`"
                ));
            }
            UnitState::Unknown(why) => report.check(&name, Status::Degraded, format!("unknown: {why}"), None),
        }
    }

    for (endpoint, result) in endpoints {
        let name = format!("endpoint {endpoint}");
        match result {
            Ok(took) => {
                let perf = report.perf(&name, round3(took.as_secs_f64() * 1000.0), "ms").range(0.0, None);
                report.check(&name, Status::Healthy, "reachable", Some(perf));
            }
            Err(e) => {
                report.check(&name, Status::Failed, format!("{e:#}"), None);
                report
                    .recommendations
                    .push(format!("system/host: `{endpoint}` is unreachable; check the network path"));
            }
        }
    }
    report.latency_ms = Some(round3(start.elapsed().as_secs_f64() * 1000.0));
    report
}

/// Probes the GPUs as target `system/gpu`; "not available" without NVML, never an error.
pub async fn gpus(health: &HealthSettings, budget: Duration) -> TargetReport {
    let start = Instant::now();
    let mut report = gpu_report(health, gpu::probe_within(budget).await);
    report.latency_ms = Some(round3(start.elapsed().as_secs_f64() * 1000.0));
    report
}

/// Throttle reasons that mean the GPU is held back by heat, power or hardware protection (the
/// others: idle, application clocks, the software power cap, sync boost, display clocks, are
/// how a GPU normally runs).
const SLOWDOWNS: &[&str] = &["hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"];

/// The report of target `system/gpu` from one reading of NVML: each figure judged against
/// `health`, each one NVML would not give said to be unknown (never taken for 0), and the
/// figures alert rules judge (`gpu_utilization`, `gpu_memory_usage`,
/// `gpu_temperature_celsius`: the busiest, fullest and hottest GPU's).
pub fn gpu_report(health: &HealthSettings, status: GpuStatus) -> TargetReport {
    let mut report = TargetReport::new(Tier::System, "gpu");
    let gpus = match status {
        GpuStatus::NotAvailable { reason } => {
            report.check("nvml", Status::NotAvailable, format!("not available: {reason}"), None);
            report.status = Status::NotAvailable;
            report.headline = "not available".into();
            return report;
        }
        GpuStatus::Available { gpus } if gpus.is_empty() => {
            report.check("nvml", Status::NotAvailable, "not available: NVML found no GPU", None);
            report.status = Status::NotAvailable;
            report.headline = "not available: no GPU".into();
            return report;
        }
        GpuStatus::Available { gpus } => gpus,
    };
    let unknown = |report: &mut TargetReport, check: String, what: &str| {
        report.check(&check, Status::NotAvailable, format!("{what} unknown: NVML did not give it"), None);
    };
    let mut names = Vec::new();
    for gpu in &gpus {
        let id = format!("gpu{}", gpu.index);
        match (gpu.memory_percent(), gpu.memory_used, gpu.memory_total) {
            (Some(percent), Some(used), Some(total)) => {
                let status = judge(percent, health.gpu_memory_percent);
                let perf =
                    report.perf(&format!("{id}_memory"), round3(percent), "%").percent(health.gpu_memory_percent);
                report.check(
                    &format!("{id} memory"),
                    status,
                    format!("{} of {} ({percent:.1}%)", bytes(used), bytes(total)),
                    Some(perf),
                );
                if status != Status::Healthy {
                    report.recommendations.push(format!(
                        "system/gpu: {} memory {percent:.1}% used; free cached models or move work to another GPU",
                        gpu.name
                    ));
                }
            }
            _ => unknown(&mut report, format!("{id} memory"), "memory"),
        }
        match gpu.temperature_celsius {
            Some(temp) => {
                let status = judge(f64::from(temp), health.gpu_temperature_celsius);
                let perf = report
                    .perf(&format!("{id}_temperature"), f64::from(temp), "")
                    .levels(health.gpu_temperature_celsius);
                report.check(&format!("{id} temperature"), status, format!("{temp} °C"), Some(perf));
                if status != Status::Healthy {
                    report
                        .recommendations
                        .push(format!("system/gpu: {} at {temp} °C; check cooling and the workload", gpu.name));
                }
            }
            None => unknown(&mut report, format!("{id} temperature"), "temperature"),
        }
        match gpu.utilization_percent {
            Some(util) => {
                let level = health.gpu_utilization_percent;
                let status = judge(f64::from(util), level);
                let perf = report.perf(&format!("{id}_utilization"), f64::from(util), "%").percent(level);
                let memory = gpu.memory_utilization_percent.map(|m| format!(", memory {m}%")).unwrap_or_default();
                report.check(&format!("{id} utilization"), status, format!("{util}%{memory}"), Some(perf));
                if status != Status::Healthy {
                    report.recommendations.push(format!(
                        "system/gpu: {} busy at {util}%; work waiting for it queues: spread it over the GPUs or add capacity",
                        gpu.name
                    ));
                }
            }
            None => unknown(&mut report, format!("{id} utilization"), "utilization"),
        }
        let clocks: Vec<String> = gpu.clocks.known().iter().map(|(name, mhz)| format!("{name} {mhz} MHz")).collect();
        match &gpu.throttle_reasons {
            Some(reasons) => {
                let slowed: Vec<&str> = reasons.iter().map(String::as_str).filter(|r| SLOWDOWNS.contains(r)).collect();
                let held = if reasons.is_empty() {
                    "not throttled".to_owned()
                } else {
                    format!("held by {}", reasons.join(", "))
                };
                let summary = if clocks.is_empty() { held } else { format!("{}; {held}", clocks.join(", ")) };
                let status = if slowed.is_empty() { Status::Healthy } else { Status::Degraded };
                report.check(&format!("{id} clocks"), status, summary, None);
                if !slowed.is_empty() {
                    report.recommendations.push(format!(
                        "system/gpu: {} slowed down ({}); check its cooling and power supply",
                        gpu.name,
                        slowed.join(", ")
                    ));
                }
            }
            None if !clocks.is_empty() => {
                report.check(
                    &format!("{id} clocks"),
                    Status::Healthy,
                    format!("{}; throttle reasons unknown", clocks.join(", ")),
                    None,
                );
            }
            None => unknown(&mut report, format!("{id} clocks"), "clocks and throttle reasons"),
        }
        names.push(gpu.name.clone());
    }
    let max = |values: Vec<f64>| values.into_iter().reduce(f64::max);
    if let Some(util) = max(gpus.iter().filter_map(|g| g.utilization_percent).map(f64::from).collect()) {
        report.observe(Metric::GpuUtilization, util / 100.0);
    }
    if let Some(used) = max(gpus.iter().filter_map(cache_core::gpu::GpuInfo::memory_percent).collect()) {
        report.observe(Metric::GpuMemoryUsage, used / 100.0);
    }
    if let Some(temp) = max(gpus.iter().filter_map(|g| g.temperature_celsius).map(f64::from).collect()) {
        report.observe(Metric::GpuTemperatureCelsius, temp);
    }
    report.headline = names.join(", ");
    report.metric("gpus", serde_json::to_value(&gpus).unwrap_or_default());
    report
}

/// A path as a performance-data label part: `/` is `root`, `/var/lib` is `var_lib`.
fn path_label(path: &std::path::Path) -> String {
    let trimmed = path.to_string_lossy().trim_matches('/').replace('/', "_");
    if trimmed.is_empty() { "root".into() } else { trimmed }
}

#[cfg(test)]
mod tests {
    use cache_core::gpu::{Clocks, GpuInfo};

    use super::*;

    const GIB: u64 = 1 << 30;

    /// Two GPUs as NVML reports an H200 host: one busy with every figure, one whose driver
    /// gives no memory or utilisation and is slowed down by heat.
    fn reading() -> GpuStatus {
        let busy = GpuInfo {
            index: 0,
            name: "NVIDIA H200".into(),
            uuid: Some("GPU-5c1d63a3-1b0e-4a5c-9a51-0b2f3c4d5e6f".into()),
            memory_used: Some(120 * GIB),
            memory_total: Some(141 * GIB),
            utilization_percent: Some(97),
            memory_utilization_percent: Some(61),
            temperature_celsius: Some(71),
            clocks: Clocks { graphics_mhz: Some(1980), sm_mhz: Some(1980), memory_mhz: Some(3201) },
            throttle_reasons: Some(vec!["sw_power_cap".into()]),
        };
        let hot = GpuInfo {
            index: 1,
            uuid: None,
            memory_used: None,
            memory_total: None,
            utilization_percent: None,
            memory_utilization_percent: None,
            temperature_celsius: Some(88),
            clocks: Clocks::default(),
            throttle_reasons: Some(vec!["hw_thermal_slowdown".into()]),
            ..busy.clone()
        };
        GpuStatus::Available { gpus: vec![busy, hot] }
    }

    fn check<'a>(report: &'a TargetReport, name: &str) -> &'a crate::report::Check {
        report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check `{name}`: {report:#?}"))
    }

    #[test]
    fn each_nvml_figure_is_judged_and_an_unknown_one_is_said_never_taken_for_0() {
        let report = gpu_report(&HealthSettings::default(), reading());
        assert_eq!(report.status, Status::Degraded, "{report:#?}");
        let busy = check(&report, "gpu0 utilization");
        assert_eq!((busy.status, busy.summary.as_str()), (Status::Degraded, "97%, memory 61%"));
        assert_eq!(busy.perf.as_ref().unwrap().render(), "'system_gpu_gpu0_utilization'=97%;95;101;0;100");
        assert_eq!(check(&report, "gpu0 memory").summary, "120.0 GiB of 141.0 GiB (85.1%)");
        assert_eq!(check(&report, "gpu0 memory").status, Status::Healthy);
        let clocks = check(&report, "gpu0 clocks");
        assert_eq!(
            (clocks.status, clocks.summary.as_str()),
            (Status::Healthy, "graphics 1980 MHz, sm 1980 MHz, memory 3201 MHz; held by sw_power_cap")
        );
        for (name, what) in [("gpu1 memory", "memory"), ("gpu1 utilization", "utilization")] {
            let unknown = check(&report, name);
            assert_eq!(unknown.status, Status::NotAvailable, "{name}");
            assert_eq!(unknown.summary, format!("{what} unknown: NVML did not give it"));
            assert!(unknown.perf.is_none(), "no 0 in the performance data: {name}");
        }
        assert_eq!(check(&report, "gpu1 temperature").status, Status::Degraded);
        let slowed = check(&report, "gpu1 clocks");
        assert_eq!((slowed.status, slowed.summary.as_str()), (Status::Degraded, "held by hw_thermal_slowdown"));
        assert!(report.recommendations.iter().any(|r| r.contains("slowed down (hw_thermal_slowdown)")), "{report:#?}");
        // The rules see the busiest, fullest and hottest GPU of those NVML gave figures for.
        let observed: Vec<(Metric, f64)> =
            report.observed.iter().map(|(m, v)| (*m, (v * 1000.0).round() / 1000.0)).collect();
        assert_eq!(
            observed,
            [(Metric::GpuUtilization, 0.97), (Metric::GpuMemoryUsage, 0.851), (Metric::GpuTemperatureCelsius, 88.0)]
        );
        // Utilisation alone, however high, never fails the check by default.
        let mut settings = HealthSettings::default();
        settings.gpu_temperature_celsius.warn = 100.0;
        settings.gpu_temperature_celsius.crit = 100.0;
        let GpuStatus::Available { mut gpus } = reading() else { unreachable!() };
        gpus.truncate(1);
        gpus[0].utilization_percent = Some(100);
        let report = gpu_report(&settings, GpuStatus::Available { gpus });
        assert_eq!(report.status, Status::Degraded, "{report:#?}");
    }

    #[test]
    fn without_nvml_the_gpu_is_not_available_with_no_figure() {
        let report = gpu_report(
            &HealthSettings::default(),
            GpuStatus::NotAvailable { reason: "NVML: a libloading error occurred".into() },
        );
        assert_eq!(report.status, Status::NotAvailable);
        assert_eq!(report.checks.len(), 1);
        assert_eq!(report.checks[0].summary, "not available: NVML: a libloading error occurred");
        assert!(report.observed.is_empty() && report.metrics.is_empty(), "{report:#?}");
        let none = gpu_report(&HealthSettings::default(), GpuStatus::Available { gpus: Vec::new() });
        assert_eq!((none.status, none.headline.as_str()), (Status::NotAvailable, "not available: no GPU"));
    }
}
