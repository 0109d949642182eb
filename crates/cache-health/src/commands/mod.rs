//! cache-health's commands.

pub mod alerts;
pub mod check;
pub mod monitor;
