//! GPUs through NVML. The NVML library is loaded at run time: on a host without the NVIDIA
//! driver the probe says "not available" and nothing fails. It is initialised once per process.
//!
//! Every figure NVML would not give is `None` ("unknown"), never 0: a GPU whose utilisation
//! cannot be read is not an idle GPU. [`probe`] reads the devices; what the tools make of a
//! reading ([`GpuStatus`]: the health probe, the analytics history, the Prometheus export) takes
//! it as a value, so that a reading of real figures can be fed to them on a host without a GPU.

use serde::{Deserialize, Serialize};

/// Clock speeds, MHz.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clocks {
    /// The graphics clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphics_mhz: Option<u32>,
    /// The streaming-multiprocessor clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_mhz: Option<u32>,
    /// The memory clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mhz: Option<u32>,
}

impl Clocks {
    /// Each clock known, by name (`graphics`, `sm`, `memory`), MHz.
    pub fn known(&self) -> Vec<(&'static str, u32)> {
        [("graphics", self.graphics_mhz), ("sm", self.sm_mhz), ("memory", self.memory_mhz)]
            .into_iter()
            .filter_map(|(name, mhz)| mhz.map(|mhz| (name, mhz)))
            .collect()
    }
}

/// One GPU's state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// The GPU's UUID (`GPU-…`), stable across reboots and index changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Memory in use, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used: Option<u64>,
    /// Memory in total, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total: Option<u64>,
    /// GPU utilisation over the last sample period (time a kernel was running), percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<u32>,
    /// Memory utilisation over the last sample period (time memory was read or written),
    /// percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_utilization_percent: Option<u32>,
    /// Core temperature, degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
    /// Current clock speeds.
    #[serde(default)]
    pub clocks: Clocks,
    /// What holds the clocks down now ([`THROTTLE_REASONS`]' names; empty: nothing); `None`
    /// when NVML would not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_reasons: Option<Vec<String>>,
}

impl GpuInfo {
    /// Memory in use, percent, when both figures are known.
    pub fn memory_percent(&self) -> Option<f64> {
        match (self.memory_used, self.memory_total) {
            (Some(used), Some(total)) if total > 0 => Some(crate::system::percent(used, total)),
            _ => None,
        }
    }
}

/// NVML's clock throttle reasons (`nvmlClocksThrottleReason*` in `nvml.h`): the bit and the
/// name the toolkit gives it.
pub const THROTTLE_REASONS: &[(u64, &str)] = &[
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
];

/// The names of the reasons set in NVML's throttle-reason bit mask (bits of no known reason are
/// left out).
pub fn throttle_reason_names(bits: u64) -> Vec<String> {
    THROTTLE_REASONS.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| (*name).to_owned()).collect()
}

/// What the GPU probe found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum GpuStatus {
    /// NVML answered; the list may be empty.
    Available {
        /// The GPUs.
        gpus: Vec<GpuInfo>,
    },
    /// No NVML (no driver, no GPU, or built without the `gpu` feature).
    NotAvailable {
        /// Why.
        reason: String,
    },
}

/// Probes every GPU within `budget` on a blocking thread (NVML calls block, and a wedged
/// driver must not hold the run): "not available" when the probe panics or takes longer.
pub async fn probe_within(budget: std::time::Duration) -> GpuStatus {
    match tokio::time::timeout(budget, tokio::task::spawn_blocking(probe)).await {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => GpuStatus::NotAvailable { reason: "the NVML probe panicked".into() },
        Err(_) => GpuStatus::NotAvailable { reason: "NVML gave no answer in time".into() },
    }
}

/// Probes every GPU. Blocking: call it from `spawn_blocking` (or [`probe_within`]).
#[cfg(feature = "gpu")]
pub fn probe() -> GpuStatus {
    use std::sync::OnceLock;

    use nvml_wrapper::Nvml;
    use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};

    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    let nvml = match NVML.get_or_init(|| Nvml::init().map_err(|e| e.to_string())) {
        Ok(nvml) => nvml,
        Err(reason) => return GpuStatus::NotAvailable { reason: format!("NVML: {reason}") },
    };
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(e) => return GpuStatus::NotAvailable { reason: format!("NVML device count: {e}") },
    };
    let mut gpus = Vec::new();
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else { continue };
        let memory = device.memory_info().ok();
        let utilization = device.utilization_rates().ok();
        gpus.push(GpuInfo {
            index,
            name: device.name().unwrap_or_else(|_| "unknown".into()),
            uuid: device.uuid().ok(),
            memory_used: memory.as_ref().map(|m| m.used),
            memory_total: memory.as_ref().map(|m| m.total),
            utilization_percent: utilization.as_ref().map(|u| u.gpu),
            memory_utilization_percent: utilization.as_ref().map(|u| u.memory),
            temperature_celsius: device.temperature(TemperatureSensor::Gpu).ok(),
            clocks: Clocks {
                graphics_mhz: device.clock_info(Clock::Graphics).ok(),
                sm_mhz: device.clock_info(Clock::SM).ok(),
                memory_mhz: device.clock_info(Clock::Memory).ok(),
            },
            throttle_reasons: device.current_throttle_reasons().ok().map(|r| throttle_reason_names(r.bits())),
        });
    }
    GpuStatus::Available { gpus }
}

/// Probes every GPU: this build has no GPU support.
#[cfg(not(feature = "gpu"))]
pub fn probe() -> GpuStatus {
    GpuStatus::NotAvailable { reason: "built without the `gpu` feature".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_bits_have_nvmls_names() {
        assert_eq!(throttle_reason_names(0), Vec::<String>::new());
        assert_eq!(throttle_reason_names(0x4 | 0x40), ["sw_power_cap", "hw_thermal_slowdown"]);
        // A bit a later driver adds is left out, not misnamed.
        assert_eq!(throttle_reason_names(0x1 | 0x8000), ["gpu_idle"]);
    }

    #[cfg(feature = "gpu")]
    #[test]
    fn the_bits_are_nvml_wrappers() {
        use nvml_wrapper::bitmasks::device::ThrottleReasons as R;
        let theirs = [
            R::GPU_IDLE,
            R::APPLICATIONS_CLOCKS_SETTING,
            R::SW_POWER_CAP,
            R::HW_SLOWDOWN,
            R::SYNC_BOOST,
            R::SW_THERMAL_SLOWDOWN,
            R::HW_THERMAL_SLOWDOWN,
            R::HW_POWER_BRAKE_SLOWDOWN,
            R::DISPLAY_CLOCK_SETTING,
        ];
        let ours: Vec<u64> = THROTTLE_REASONS.iter().map(|(bit, _)| *bit).collect();
        assert_eq!(ours, theirs.map(|r| r.bits()));
    }

    #[test]
    fn unknown_memory_is_no_percentage() {
        let gpu = GpuInfo {
            index: 0,
            name: "x".into(),
            uuid: None,
            memory_used: Some(1),
            memory_total: None,
            utilization_percent: None,
            memory_utilization_percent: None,
            temperature_celsius: None,
            clocks: Clocks::default(),
            throttle_reasons: None,
        };
        assert_eq!(gpu.memory_percent(), None);
        assert_eq!(GpuInfo { memory_total: Some(4), ..gpu }.memory_percent(), Some(25.0));
    }

    #[test]
    fn the_probe_says_why_without_nvml_and_gives_sane_figures_with_it() {
        // No NVIDIA driver (this build host, CI): a reason, never a failure. A GPU host: figures
        // within their ranges, unknown ones `None`.
        match probe() {
            GpuStatus::NotAvailable { reason } => assert!(reason.starts_with("NVML") || reason.contains("feature")),
            GpuStatus::Available { gpus } => {
                for gpu in gpus {
                    assert!(!gpu.name.is_empty(), "{gpu:?}");
                    assert!(gpu.memory_percent().is_none_or(|p| (0.0..=100.0).contains(&p)), "{gpu:?}");
                    assert!(gpu.utilization_percent.is_none_or(|u| u <= 100), "{gpu:?}");
                }
            }
        }
    }
}
