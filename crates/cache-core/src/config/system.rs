//! `[system]`: the host resources the `system` tier checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Host resources checked by the `system` tier.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemSettings {
    /// Paths whose file system's usage is checked.
    pub disk_paths: Vec<PathBuf>,
    /// Directories whose total size is reported (like `du -s`).
    pub directories: Vec<PathBuf>,
    /// systemd units that must be active.
    pub systemd_units: Vec<String>,
    /// `host:port` endpoints that must accept a TCP connection.
    pub endpoints: Vec<String>,
    /// Budget for the system probe as a whole (directory walks, unit queries, connects).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Probe GPUs through NVML when the library is present.
    pub gpu: bool,
}

impl Default for SystemSettings {
    fn default() -> Self {
        Self {
            disk_paths: vec![PathBuf::from("/")],
            directories: Vec::new(),
            systemd_units: Vec::new(),
            endpoints: Vec::new(),
            timeout: Duration::from_secs(5),
            gpu: true,
        }
    }
}
