//! Cluster claims: `id.k8s.io` (the kube-system namespace UID, which Ramen copies into
//! DRClusterConfig) and `name`. Sent in Hello; also kept as spoke `ClusterClaim`
//! objects when that CRD is installed, as OCM's registration agent would find them.

use std::collections::BTreeMap;

use drbridge_model::Gvk;
use serde_json::{Value, json};
use tracing::{debug, info};

use crate::apply::uid_of;
use crate::cluster::{Cluster, ClusterError, Resolved};

pub const CLAIM_ID: &str = "id.k8s.io";
pub const CLAIM_NAME: &str = "name";

/// The claims of this cluster.
pub async fn cluster_claims<C: Cluster>(
    cluster: &C,
    name: &str,
) -> Result<BTreeMap<String, String>, ClusterError> {
    let ns = Resolved {
        group: String::new(),
        version: "v1".into(),
        kind: "Namespace".into(),
        plural: "namespaces".into(),
        namespaced: false,
    };
    let id = match cluster.get(&ns, "", "kube-system").await? {
        Some(v) => uid_of(&v),
        None => {
            return Err(ClusterError::NotFound(
                "namespaces \"kube-system\" not found".into(),
            ));
        }
    };
    Ok(BTreeMap::from([
        (CLAIM_ID.to_string(), id),
        (CLAIM_NAME.to_string(), name.to_string()),
    ]))
}

/// Creates or refreshes the spoke ClusterClaims; does nothing if the CRD is absent.
pub async fn ensure_spoke_claims<C: Cluster>(
    cluster: &C,
    claims: &BTreeMap<String, String>,
) -> Result<(), ClusterError> {
    let gvk = Gvk::new(
        "cluster.open-cluster-management.io",
        "v1alpha1",
        "ClusterClaim",
    );
    let r = match cluster.resolve_kind(&gvk).await {
        Ok(r) => r,
        Err(ClusterError::NoKind(_)) => {
            debug!("no ClusterClaim CRD; claims go to the hub only");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for (name, value) in claims {
        let desired = json!({
            "apiVersion": r.api_version(), "kind": r.kind,
            "metadata": {"name": name}, "spec": {"value": value}
        });
        match cluster.get(&r, "", name).await? {
            None => {
                cluster.create(&r, "", desired).await?;
                info!(claim = %name, %value, "created ClusterClaim");
            }
            Some(mut live)
                if live.pointer("/spec/value").and_then(Value::as_str) != Some(value) =>
            {
                live["spec"] = json!({"value": value});
                cluster.replace(&r, "", name, live).await?;
                info!(claim = %name, %value, "updated ClusterClaim");
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeCluster;

    #[tokio::test]
    async fn claims_and_spoke_objects() {
        let c = FakeCluster::new();
        assert!(cluster_claims(&c, "c1").await.is_err());
        let ks = c.put(
            "Namespace",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}),
        );
        let claims = cluster_claims(&c, "c1").await.unwrap();
        assert_eq!(claims[CLAIM_ID], uid_of(&ks));
        assert_eq!(claims[CLAIM_NAME], "c1");
        // No CRD: nothing to do.
        ensure_spoke_claims(&c, &claims).await.unwrap();
        c.add_kind(
            "cluster.open-cluster-management.io",
            "v1alpha1",
            "ClusterClaim",
            "clusterclaims",
            false,
        );
        ensure_spoke_claims(&c, &claims).await.unwrap();
        assert_eq!(
            c.object("ClusterClaim", "", "name").unwrap()["spec"]["value"],
            "c1"
        );
        let w = c.writes();
        ensure_spoke_claims(&c, &claims).await.unwrap();
        assert_eq!(c.writes(), w, "unchanged claims are not rewritten");
        let mut other = claims.clone();
        other.insert(CLAIM_NAME.into(), "c2".into());
        ensure_spoke_claims(&c, &other).await.unwrap();
        assert_eq!(
            c.object("ClusterClaim", "", "name").unwrap()["spec"]["value"],
            "c2"
        );
    }
}
