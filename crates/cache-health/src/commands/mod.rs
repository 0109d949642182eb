//! cache-health's commands.

pub mod check;
