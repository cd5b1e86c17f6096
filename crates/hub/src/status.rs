//! Status write-back: agent reports, index intents and presence changes go through
//! one bounded queue to a single writer task, which turns them into JSON merge
//! patches with the field manager `drbridge-hub`.
//!
//! Why merge patches on the `status` subresource: Ramen Updates whole ManifestWorks
//! and ManagedClusterViews, but an Update of the main resource ignores `status` (the
//! CRDs have a status subresource), so the two writers never touch the same fields.
//! A merge patch (unlike server-side apply) leaves fields it does not mention alone,
//! which is exactly what a failed view needs: `status.result` stays as it was.
//!
//! Fencing: a report is written only if the object still has the report's uid and the
//! report's generation is not older than the object's. Status patches carry
//! `metadata.resourceVersion` of the object the check was made against, so the API
//! server refuses the write if the object changed in between (for example Ramen bumped
//! the generation); the writer then re-reads the object and checks again.
//!
//! The parts: `body` builds what is written, `plan` (pure, unit-tested) decides each patch,
//! `queue` coalesces ops per object, and `writer` ([`StatusWriter`]) only executes patches.

mod body;
mod ops;
mod plan;
mod queue;
mod writer;

pub use body::{
    MAX_CONDITION_MESSAGE_CHARS, TRUNCATED_MARKER, bounded_message, cluster_status_json,
    condition_json, set_condition, view_status_json, work_status_json,
};
pub use ops::{Charge, ClusterStatus, Report, Skip, WriteOp};
pub use plan::{
    fence, plan_annotation, plan_finalizer, plan_reject, plan_unacknowledged, plan_view_status,
    plan_work_status,
};
pub use queue::Pending;
pub use writer::{StatusWriter, WriterConfig};

#[cfg(test)]
mod tests;
