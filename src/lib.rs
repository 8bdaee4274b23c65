//! Switchboard: a hybrid SFU/MCU media bridge. See docs/architecture.md.

// `unsafe` is denied workspace-wide; only `runtime::batch`, `runtime::timer` and
// `runtime::os_thread` (and `limits`) allow it, for their libc calls, each block with its SAFETY
// comment.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod core;
pub mod egress;
#[allow(unsafe_code, reason = "getrlimit/setrlimit through libc")]
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod ng;
pub mod runtime;
pub mod webhooks;

/// The unit tests count heap allocations on paths that must make none (`runtime::worker`'s
/// receive path for dropped datagrams).
#[cfg(test)]
#[global_allocator]
static COUNTING: switchboard_driver::alloc_count::Counting = switchboard_driver::alloc_count::Counting;
