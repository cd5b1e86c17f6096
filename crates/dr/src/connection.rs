//! How well the hub is connected to a managed cluster: its ManagedCluster's `Available`
//! condition (written by drbridge's hub, or OCM's registration) and drbridge's
//! `drbridge.io/unreachable-since` annotation.

use drbridge_api::cluster::ManagedCluster;
use drbridge_api::cluster::consts::condition::MANAGED_CLUSTER_CONDITION_AVAILABLE;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

/// The connection state of one cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// False when there is no ManagedCluster of that name.
    pub registered: bool,
    /// `Available` condition status: True, False, Unknown; empty if not reported.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub available: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Since when drbridge's hub has not heard from the cluster's agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<Time>,
}

impl Connection {
    /// From the ManagedCluster (if any) and an `unreachable-since` value found on the
    /// cluster's views or works.
    pub fn new(mc: Option<&ManagedCluster>, unreachable_since: Option<Time>) -> Self {
        let Some(mc) = mc else {
            return Connection {
                unreachable_since,
                ..Default::default()
            };
        };
        let cond = mc.status.as_ref().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == MANAGED_CLUSTER_CONDITION_AVAILABLE)
        });
        Connection {
            registered: true,
            available: cond.map(|c| c.status.clone()).unwrap_or_default(),
            reason: cond.map(|c| c.reason.clone()).unwrap_or_default(),
            message: cond.map(|c| c.message.clone()).unwrap_or_default(),
            unreachable_since,
        }
    }

    /// Connected now.
    pub fn is_connected(&self) -> bool {
        self.registered && self.available == "True" && self.unreachable_since.is_none()
    }

    /// One phrase: `connected`, `unreachable since … (3m ago)`, `not connected (…)`.
    pub fn describe(&self, now: Timestamp) -> String {
        if !self.registered {
            return "not registered (there is no ManagedCluster of that name)".into();
        }
        if let Some(t) = &self.unreachable_since {
            return format!("unreachable since {}", crate::time::when(now, t));
        }
        match self.available.as_str() {
            "True" => "connected".into(),
            "" => "not reported".into(),
            s => format!("not connected (Available={s}: {})", self.message),
        }
    }

    /// Short form for a table column.
    pub fn short(&self, now: Timestamp) -> String {
        if !self.registered {
            return "unregistered".into();
        }
        if let Some(t) = &self.unreachable_since {
            return format!(
                "unreachable {}",
                crate::time::human(crate::time::age(now, t))
            );
        }
        match self.available.as_str() {
            "True" => "connected".into(),
            "" => "unknown".into(),
            _ => "not connected".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drbridge_api::cluster::ManagedClusterStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn mc(status: &str) -> ManagedCluster {
        let mut mc = ManagedCluster::new("dr1", Default::default());
        mc.status = Some(ManagedClusterStatus {
            conditions: vec![Condition {
                type_: MANAGED_CLUSTER_CONDITION_AVAILABLE.into(),
                status: status.into(),
                reason: "ManagedClusterLeaseUpdateStopped".into(),
                message: "Registration agent stopped updating its lease.".into(),
                last_transition_time: Time(Default::default()),
                observed_generation: None,
            }],
            ..Default::default()
        });
        mc
    }

    #[test]
    fn describes_connection_states() {
        let now: Timestamp = "2026-11-27T10:05:00Z".parse().unwrap();
        assert!(Connection::new(Some(&mc("True")), None).is_connected());
        assert_eq!(
            Connection::new(Some(&mc("True")), None).describe(now),
            "connected"
        );
        let lost = Connection::new(
            Some(&mc("Unknown")),
            crate::time::parse_time("2026-11-27T10:00:00Z"),
        );
        assert!(!lost.is_connected());
        assert_eq!(
            lost.describe(now),
            "unreachable since 2026-11-27T10:00:00Z (5m ago)"
        );
        assert_eq!(lost.short(now), "unreachable 5m");
        let down = Connection::new(Some(&mc("Unknown")), None);
        assert_eq!(
            down.describe(now),
            "not connected (Available=Unknown: Registration agent stopped updating its lease.)"
        );
        assert_eq!(
            Connection::new(None, None).describe(now),
            "not registered (there is no ManagedCluster of that name)"
        );
    }
}
