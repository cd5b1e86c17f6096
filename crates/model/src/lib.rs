//! OCM work-agent semantics as pure functions: no API server, no network.
//!
//! The agent (`drbridge-agent`) does the I/O and calls these for every decision whose
//! exact result Ramen or OCM tooling depends on, so that most behaviour is tested here,
//! fast.

pub mod allowlist;
pub mod fencing;
pub mod manifest;
pub mod merge;
pub mod order;
pub mod status;
pub mod strategy;
pub mod view;

pub use allowlist::{Allowlist, NotAllowed};
pub use fencing::{Decision, DeletePolicy, Held, Offered, OrphanRule, ResourceKey};
pub use manifest::{Gvk, InvalidManifest, ManifestError, ManifestMeta, ParsedManifest};
pub use status::{Availability, Condition, ConditionStatus};
pub use strategy::{ManifestConfigs, Strategy};

/// OCM's message for a kind discovery cannot map (`helper.BuildResourceMeta`).
pub fn unknown_kind_message(kind: &str) -> String {
    format!("the server doesn't have a resource type {kind:?}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_kind_text() {
        assert_eq!(
            super::unknown_kind_message("OperatorGroup"),
            "the server doesn't have a resource type \"OperatorGroup\""
        );
    }
}
