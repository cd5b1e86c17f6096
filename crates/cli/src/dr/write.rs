//! The writes every `drbridge dr` command makes the same way: server-side apply with
//! `drbridge-dr` as the field manager, a namespace made when missing, conflicts told apart.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PatchParams, PostParams};

use super::hub::{FIELD_MANAGER, KubeContext};

pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
}

/// Creates the namespace if it is missing; true if it did.
pub(crate) async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<bool> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_some() {
        return Ok(false);
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &ns,
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e).kctx(|| format!("creating namespace {name}")),
    }
}

pub(super) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(r) if r.code == 409)
}
