//! One module per tier.

pub mod duplicates;
pub mod files;
pub mod logs;
pub mod memory;
pub mod postgres;
pub mod redis;
