//! cache-core: what every cache-toolkit binary shares.
//!
//! Configuration ([`config`]), the state directory ([`state`]), job locks ([`lock`]), run
//! records ([`runs`]), clients of the remote tiers ([`clients`]), host probes ([`system`],
//! [`gpu`]), output ([`output`]), secret redaction ([`redact`]), exit codes ([`exit`]) and the
//! process life cycle of a tool ([`app`]). This crate never prints except through
//! [`output::Printer`] and never exits the process.

#![warn(missing_docs)]

pub mod alerting;
pub mod app;
pub mod archive;
pub mod audit;
pub mod cache_table;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod env;
pub mod error;
pub mod exit;
pub mod fleet;
pub mod forecast;
pub mod gate;
pub mod gpu;
pub mod groups;
pub mod heartbeat;
pub mod history;
pub mod jobs;
pub mod journal;
pub mod keyspace;
pub mod ledger;
pub mod lock;
pub mod maintenance;
pub mod messages;
pub mod output;
pub mod redact;
pub mod runs;
pub mod scan;
pub mod schedule;
pub mod state;
pub mod system;
pub mod tier;
