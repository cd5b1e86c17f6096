//! Generated prost/tonic code for drbridge's hub <-> agent protocol
//! (`proto/drbridge/v1/dispatch.proto`).
//!
//! The code in `src/gen` is committed; `cargo xtask codegen` regenerates it (with a vendored
//! protoc, so builds need none) and CI checks it with `cargo xtask codegen --check`.
//!
//! The client has no `DispatchClient::connect(endpoint)` constructor: it would clash with the
//! RPC method `connect`. Build a `tonic::transport::Channel` (with mTLS) and use
//! `DispatchClient::new(channel)`.

/// `drbridge.v1`: one bidirectional `Dispatch.Connect` stream per agent.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    include!("gen/drbridge.v1.rs");
}

pub use v1::dispatch_client::DispatchClient;
pub use v1::dispatch_server::{Dispatch, DispatchServer};
pub use v1::{AgentMessage, HubMessage};

/// The largest agent message a hub accepts by default: a report ends up in one object's
/// status, and the API server refuses objects much larger (etcd's default request limit is
/// 1.5 MiB). Agents shrink what they report to fit (drbridge-agent's `report_size`).
pub const MAX_REPORT_BYTES: usize = 2 * 1024 * 1024;

/// gRPC metadata key a hub replica sets on the status with which it refuses or ends a stream
/// because it is not (or no longer) the leader: the agent then dials again at once instead of
/// backing off, since another replica may lead.
pub const NOT_LEADER_METADATA: &str = "drbridge-not-leader";
