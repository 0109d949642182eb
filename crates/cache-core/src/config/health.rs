//! `[health]`: the thresholds of `cache-health check`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ratio;

/// A warning and a critical level for one measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// At or above this the measure is degraded (WARNING).
    pub warn: f64,
    /// At or above this the measure failed (CRITICAL).
    pub crit: f64,
}

impl Level {
    const fn new(warn: f64, crit: f64) -> Self {
        Self { warn, crit }
    }
}

/// Latency above which a tier is degraded (seed 000 defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyThresholds {
    /// Redis probe (default 500 ms).
    #[serde(with = "humantime_serde")]
    pub redis: Duration,
    /// PostgreSQL probe (default 1000 ms).
    #[serde(with = "humantime_serde")]
    pub postgres: Duration,
    /// Memory-API probe (default 2000 ms).
    #[serde(with = "humantime_serde")]
    pub memory: Duration,
    /// HTTP application probe (default 1000 ms).
    #[serde(with = "humantime_serde")]
    pub http: Duration,
}

impl Default for LatencyThresholds {
    fn default() -> Self {
        Self {
            redis: Duration::from_millis(500),
            postgres: Duration::from_millis(1000),
            memory: Duration::from_millis(2000),
            http: Duration::from_millis(1000),
        }
    }
}

/// Thresholds of `cache-health check`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// Probe latency above which a tier is degraded.
    pub latency: LatencyThresholds,
    /// Host memory in use, percent.
    pub memory_percent: Level,
    /// Disk space in use on each checked path, percent.
    pub disk_percent: Level,
    /// One-minute load average divided by the number of CPUs.
    pub load_per_cpu: Level,
    /// Redis `used_memory` as a percentage of `maxmemory` (when set).
    pub redis_memory_percent: Level,
    /// Redis hit ratio (0..1) below which the target is degraded.
    #[serde(deserialize_with = "ratio::deserialize")]
    pub hit_ratio_min: f64,
    /// Lookups (hits + misses) needed before the hit ratio is judged.
    pub hit_ratio_min_lookups: u64,
    /// PostgreSQL connections as a percentage of `max_connections`.
    pub postgres_connections_percent: Level,
    /// Redis clients as a percentage of `maxclients`.
    pub redis_clients_percent: Level,
    /// A directory's size as a percentage of its `max_size`.
    pub directory_percent: Level,
    /// GPU temperature, degrees Celsius.
    pub gpu_temperature_celsius: Level,
    /// GPU memory in use, percent.
    pub gpu_memory_percent: Level,
    /// GPU utilisation, percent (the default `crit` above 100: a busy GPU is a warning, never a
    /// failed check).
    pub gpu_utilization_percent: Level,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            latency: LatencyThresholds::default(),
            memory_percent: Level::new(85.0, 95.0),
            disk_percent: Level::new(85.0, 95.0),
            load_per_cpu: Level::new(2.0, 4.0),
            redis_memory_percent: Level::new(80.0, 95.0),
            hit_ratio_min: 0.7,
            hit_ratio_min_lookups: 1000,
            postgres_connections_percent: Level::new(80.0, 90.0),
            redis_clients_percent: Level::new(80.0, 90.0),
            directory_percent: Level::new(85.0, 100.0),
            gpu_temperature_celsius: Level::new(85.0, 95.0),
            gpu_memory_percent: Level::new(90.0, 98.0),
            gpu_utilization_percent: Level::new(95.0, 101.0),
        }
    }
}
