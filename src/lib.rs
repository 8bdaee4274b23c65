//! Switchboard: a hybrid SFU/MCU media bridge. See docs/architecture.md.

pub mod api;
pub mod config;
pub mod core;
pub mod metrics;
pub mod runtime;
