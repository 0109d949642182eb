//! GPUs through NVML. The NVML library is loaded at run time: on a host without the NVIDIA
//! driver the probe says "not available" and nothing fails. It is initialised once per process.

use serde::Serialize;

/// One GPU's state.
#[derive(Clone, Debug, Serialize)]
pub struct GpuInfo {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: String,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Memory in total, bytes.
    pub memory_total: u64,
    /// Memory in use, percent.
    pub memory_percent: f64,
    /// GPU utilization over the last sample period, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utilization_percent: Option<u32>,
    /// Core temperature, degrees Celsius.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_celsius: Option<u32>,
}

/// What the GPU probe found.
#[derive(Clone, Debug, Serialize)]
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

/// Probes every GPU. Blocking: call it from `spawn_blocking`.
#[cfg(feature = "gpu")]
pub fn probe() -> GpuStatus {
    use std::sync::OnceLock;

    use nvml_wrapper::Nvml;
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;

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
        let (used, total) = device.memory_info().map(|m| (m.used, m.total)).unwrap_or((0, 0));
        gpus.push(GpuInfo {
            index,
            name: device.name().unwrap_or_else(|_| "unknown".into()),
            memory_used: used,
            memory_total: total,
            memory_percent: crate::system::percent(used, total),
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            temperature_celsius: device.temperature(TemperatureSensor::Gpu).ok(),
        });
    }
    GpuStatus::Available { gpus }
}

/// Probes every GPU: this build has no GPU support.
#[cfg(not(feature = "gpu"))]
pub fn probe() -> GpuStatus {
    GpuStatus::NotAvailable { reason: "built without the `gpu` feature".into() }
}
