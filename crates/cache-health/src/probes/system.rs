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
    let mut report = TargetReport::new(Tier::System, "gpu");
    let status = match tokio::time::timeout(budget, tokio::task::spawn_blocking(gpu::probe)).await {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => GpuStatus::NotAvailable { reason: "the NVML probe panicked".into() },
        Err(_) => GpuStatus::NotAvailable { reason: "NVML gave no answer in time".into() },
    };
    match status {
        GpuStatus::NotAvailable { reason } => {
            report.check("nvml", Status::NotAvailable, format!("not available: {reason}"), None);
            report.status = Status::NotAvailable;
            report.headline = "not available".into();
        }
        GpuStatus::Available { gpus } if gpus.is_empty() => {
            report.check("nvml", Status::NotAvailable, "not available: NVML found no GPU", None);
            report.status = Status::NotAvailable;
            report.headline = "not available: no GPU".into();
        }
        GpuStatus::Available { gpus } => {
            let mut names = Vec::new();
            for gpu in &gpus {
                let id = format!("gpu{}", gpu.index);
                let status = judge(gpu.memory_percent, health.gpu_memory_percent);
                let perf = report
                    .perf(&format!("{id}_memory"), round3(gpu.memory_percent), "%")
                    .percent(health.gpu_memory_percent);
                report.check(
                    &format!("{id} memory"),
                    status,
                    format!("{} of {} ({:.1}%)", bytes(gpu.memory_used), bytes(gpu.memory_total), gpu.memory_percent),
                    Some(perf),
                );
                if let Some(temp) = gpu.temperature_celsius {
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
                if let Some(util) = gpu.utilization_percent {
                    let perf = report.perf(&format!("{id}_utilization"), f64::from(util), "%").range(0.0, Some(100.0));
                    report.check(&format!("{id} utilization"), Status::Healthy, format!("{util}%"), Some(perf));
                }
                names.push(gpu.name.clone());
            }
            report.headline = names.join(", ");
            report.metric("gpus", serde_json::to_value(&gpus).unwrap_or_default());
        }
    }
    report.latency_ms = Some(round3(start.elapsed().as_secs_f64() * 1000.0));
    report
}

/// A path as a performance-data label part: `/` is `root`, `/var/lib` is `var_lib`.
fn path_label(path: &std::path::Path) -> String {
    let trimmed = path.to_string_lossy().trim_matches('/').replace('/', "_");
    if trimmed.is_empty() { "root".into() } else { trimmed }
}
