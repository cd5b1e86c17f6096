//! Cluster membership on the hub: the CA Secret, join tokens, registration and removal.
//! What `drbridge cluster join|remove` does, as a library so tests run the same code.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drbridge_tls::ClusterName;
use drbridge_tls::pki::Ca;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams};
use serde_json::json;
use tracing::info;

use crate::identity::{IdentityRecord, RecordError, update_record};
use crate::join_token::{CLUSTER_LABEL, JoinToken, TOKEN_SECRET_TYPE, TokenRecord};
use crate::objects::cluster_resource;

/// Default namespace of the hub's own state (CA, tokens, identity records).
pub const DEFAULT_NAMESPACE: &str = "drbridge-system";
/// The Secret holding the CA that signs agents' client certificates: `tls.crt` and `tls.key`,
/// and optionally `ca.crt`, the CA bundle agents use to verify the hub (default `tls.crt`).
pub const CA_SECRET: &str = "drbridge-ca";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "no CA: Secret {namespace}/{CA_SECRET} does not exist (install the hub chart, or run `drbridge cluster join`, which creates one)"
    )]
    NoCa { namespace: String },
    #[error("Secret {namespace}/{CA_SECRET}: {reason}")]
    BadCa { namespace: String, reason: String },
    #[error(transparent)]
    Tls(#[from] drbridge_tls::Error),
    #[error(transparent)]
    Record(#[from] RecordError),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> AdminError {
    let what = what.into();
    move |source| AdminError::Kube { what, source }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The hub's signing CA and the bundle agents trust for the hub.
pub struct HubCa {
    pub ca: Ca,
    pub bundle_pem: String,
}

impl std::fmt::Debug for HubCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubCa").finish_non_exhaustive()
    }
}

/// Loads the CA from its Secret.
pub async fn load_ca(client: &kube::Client, namespace: &str) -> Result<HubCa, AdminError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(CA_SECRET)
        .await
        .map_err(kube_err(format!("reading Secret {namespace}/{CA_SECRET}")))?
        .ok_or_else(|| AdminError::NoCa {
            namespace: namespace.to_owned(),
        })?;
    ca_from_secret(&secret, namespace)
}

fn ca_from_secret(secret: &Secret, namespace: &str) -> Result<HubCa, AdminError> {
    let bad = |reason: String| AdminError::BadCa {
        namespace: namespace.to_owned(),
        reason,
    };
    let field = |key: &str| -> Result<Option<String>, AdminError> {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8(b.0.clone()).map_err(|_| bad(format!("{key} is not UTF-8"))))
            .transpose()
    };
    let cert = field("tls.crt")?.ok_or_else(|| bad("no tls.crt".into()))?;
    let key = field("tls.key")?.ok_or_else(|| bad("no tls.key".into()))?;
    let ca = Ca::from_pem(&cert, &key).map_err(|e| bad(e.to_string()))?;
    let bundle_pem = field("ca.crt")?
        .filter(|b| !b.trim().is_empty())
        .unwrap_or(cert);
    Ok(HubCa { ca, bundle_pem })
}

/// The CA Secret for `ca`, with `bundle` (default: the CA itself) as `ca.crt`.
pub fn ca_secret(namespace: &str, ca: &Ca, bundle: Option<&str>) -> Secret {
    let data = BTreeMap::from([
        ("tls.crt".to_owned(), ByteString(ca.cert_pem().into())),
        ("tls.key".to_owned(), ByteString(ca.key_pem().into())),
        (
            "ca.crt".to_owned(),
            ByteString(bundle.unwrap_or(ca.cert_pem()).into()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "drbridge".to_owned(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Default::default()
    }
}

/// Stores `ca` as the hub's CA unless a CA Secret exists. Returns the CA in effect and
/// whether it was created now.
pub async fn install_ca(
    client: &kube::Client,
    namespace: &str,
    ca: &Ca,
) -> Result<(HubCa, bool), AdminError> {
    ensure_namespace(client, namespace).await?;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api
        .create(&PostParams::default(), &ca_secret(namespace, ca, None))
        .await
    {
        Ok(s) => Ok((ca_from_secret(&s, namespace)?, true)),
        Err(e) if is_status(&e, 409) => Ok((load_ca(client, namespace).await?, false)),
        Err(e) => Err(kube_err(format!("creating Secret {namespace}/{CA_SECRET}"))(e)),
    }
}

/// The hub's CA, generated and stored if there is none yet.
pub async fn ensure_ca(
    client: &kube::Client,
    namespace: &str,
) -> Result<(HubCa, bool), AdminError> {
    match load_ca(client, namespace).await {
        Err(AdminError::NoCa { .. }) => {
            install_ca(client, namespace, &Ca::generate("drbridge-ca")?).await
        }
        other => other.map(|ca| (ca, false)),
    }
}

/// Creates namespace `name` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), AdminError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(kube_err(format!("creating namespace {name}"))(e)),
    }
}

/// Registers `cluster` as OCM's registration would: its hub namespace and its ManagedCluster
/// (accepted, labelled `name` and the default cluster set), each only if absent.
pub async fn register_cluster(
    client: &kube::Client,
    cluster: &ClusterName,
) -> Result<(), AdminError> {
    ensure_namespace(client, cluster.as_str()).await?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_resource());
    let mc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cluster.open-cluster-management.io/v1",
        "kind": "ManagedCluster",
        "metadata": {
            "name": cluster.as_str(),
            "labels": {
                "name": cluster.as_str(),
                "cluster.open-cluster-management.io/clusterset": "default",
            },
        },
        "spec": { "hubAcceptsClient": true },
    }))
    .expect("a valid ManagedCluster");
    match api.create(&PostParams::default(), &mc).await {
        Ok(_) => {
            info!(%cluster, "ManagedCluster created");
            Ok(())
        }
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(kube_err(format!("creating ManagedCluster {cluster}"))(e)),
    }
}

/// Makes a join token for `cluster`, valid for `ttl`, and records its digest.
pub async fn create_join_token(
    client: &kube::Client,
    namespace: &str,
    cluster: &ClusterName,
    ttl: Duration,
) -> Result<(JoinToken, DateTime<Utc>), AdminError> {
    ensure_namespace(client, namespace).await?;
    let token = JoinToken::generate();
    let expires = Utc::now()
        + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::days(365));
    // The token is good only while the cluster is not removed after this point.
    let epoch = crate::identity::read_record(client, namespace, cluster.as_str())
        .await?
        .map_or(0, |r| r.epoch);
    let record = TokenRecord::new(&token, cluster.clone(), expires, epoch);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &record.to_secret(&token, namespace))
        .await
        .map_err(kube_err(format!(
            "creating Secret {namespace}/{}",
            token.secret_name()
        )))?;
    info!(%cluster, token_id = token.id(), %expires, "join token created");
    Ok((token, expires))
}

/// What [`remove_cluster`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub tokens_deleted: usize,
    pub managed_cluster_deleted: bool,
}

/// Revokes every certificate of `cluster` (its identity record becomes a tombstone of a new
/// epoch, which the hub watches, so open streams end at once and tokens made before are
/// refused), deletes its unused join tokens and, with `delete_managed_cluster`, its
/// ManagedCluster.
pub async fn remove_cluster(
    client: &kube::Client,
    namespace: &str,
    cluster: &ClusterName,
    delete_managed_cluster: bool,
) -> Result<Removed, AdminError> {
    ensure_namespace(client, namespace).await?;
    update_record(client, namespace, cluster.as_str(), |old| {
        Ok(IdentityRecord::removed_after(old.as_ref()))
    })
    .await?;
    info!(%cluster, "cluster identity revoked");
    let mut removed = Removed::default();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let tokens = api
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={cluster}")))
        .await
        .map_err(kube_err(format!("listing join tokens of {cluster}")))?;
    for t in tokens
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(TOKEN_SECRET_TYPE))
    {
        let name = t.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => removed.tokens_deleted += 1,
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(kube_err(format!("deleting join token {name}"))(e)),
        }
    }
    if delete_managed_cluster {
        let mcs: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_resource());
        match mcs.delete(cluster.as_str(), &DeleteParams::default()).await {
            Ok(_) => removed.managed_cluster_deleted = true,
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(kube_err(format!("deleting ManagedCluster {cluster}"))(e)),
        }
    }
    Ok(removed)
}
