//! `drbridge dr s3-profile add|list`: the S3 stores of Ramen's configuration, on the hub and
//! on the managed clusters, with their credentials' Secrets.

use std::path::PathBuf;

use anyhow::{Context, bail};
use drbridge_dr::config::{self, Change, S3Credentials, S3StoreProfile, SecretReference};
use drbridge_dr::consts::config as ramen_config;
use drbridge_dr::table::Table;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, Patch, PostParams};
use serde::Serialize;
use serde_json::json;

use super::args::{Global, Output, S3ProfileAddArgs};
use super::hub::{self, FIELD_MANAGER, KubeContext};
use super::output::{emit, say};
use super::write::{apply_params, ensure_namespace, is_conflict};

/// Adds or replaces the profile in a RamenConfig ConfigMap, with optimistic concurrency.
async fn upsert_config(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    controller_type: &str,
    profile: &S3StoreProfile,
) -> anyhow::Result<Change> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let what = format!("ConfigMap {namespace}/{name} key {}", ramen_config::KEY);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    for _ in 0..5 {
        match api.get_opt(name).await.kctx(|| format!("reading {what}"))? {
            None => {
                let (yaml, change) = config::upsert_profile(None, controller_type, profile, &what)?;
                match api
                    .create(&pp, &config::configmap(namespace, name, yaml))
                    .await
                {
                    Ok(_) => return Ok(change),
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(e).kctx(|| format!("creating {what}")),
                }
            }
            Some(mut cm) => {
                let current = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(ramen_config::KEY))
                    .cloned();
                let (yaml, change) =
                    config::upsert_profile(current.as_deref(), controller_type, profile, &what)?;
                if change == Change::Unchanged {
                    return Ok(change);
                }
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert(ramen_config::KEY.into(), yaml);
                match api.replace(name, &pp, &cm).await {
                    Ok(_) => return Ok(change),
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(e).kctx(|| format!("updating {what}")),
                }
            }
        }
    }
    bail!("{what} kept changing while being updated; try again")
}

async fn apply_secret(client: &kube::Client, secret: &Secret) -> anyhow::Result<()> {
    let ns = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(&name, &apply_params(), &Patch::Apply(secret))
        .await
        .kctx(|| format!("writing Secret {ns}/{name}"))?;
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct S3Written {
    cluster: String,
    config_map: String,
    profile: Change,
    secrets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

pub(super) async fn s3_profile_add(g: &Global, a: Box<S3ProfileAddArgs>) -> anyhow::Result<()> {
    let (Some(access_key_id), Some(secret_access_key)) =
        (a.access_key_id.clone(), a.secret_access_key.clone())
    else {
        bail!(
            "S3 credentials are needed: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
             --access-key-id and --secret-access-key)"
        );
    };
    drbridge_dr::objects::check_name("S3 profile", &a.name)?;
    let creds = S3Credentials {
        access_key_id,
        secret_access_key,
    };
    let secret_name = a
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-s3-secret", a.name));
    let mut profile = S3StoreProfile {
        s3_profile_name: a.name.clone(),
        s3_bucket: a.bucket.clone(),
        s3_compatible_endpoint: a.endpoint.clone(),
        s3_region: a.region.clone(),
        s3_secret_ref: SecretReference {
            name: secret_name.clone(),
            namespace: g.ramen_namespace.clone(),
        },
        ..Default::default()
    };
    if let Some(path) = &a.ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        profile = profile.with_ca_pem(&pem);
    }
    let mut targets: Vec<(String, Option<PathBuf>)> = vec![("hub".into(), None)];
    for m in &a.managed_kubeconfig {
        let (name, path) = m
            .split_once('=')
            .with_context(|| format!("--managed-kubeconfig {m:?}: expected NAME=KUBECONFIG"))?;
        targets.push((name.to_string(), Some(PathBuf::from(path))));
    }
    let ns = &g.ramen_namespace;
    let mut written = Vec::new();
    for (cluster, kubeconfig) in targets {
        let managed = kubeconfig.is_some();
        let client = match &kubeconfig {
            None => g.hub_client().await?,
            Some(p) => hub::client(Some(p), None).await?,
        };
        let mut notes = Vec::new();
        if ensure_namespace(&client, ns).await? {
            notes.push(format!("created namespace {ns}"));
        }
        let (cm, controller) = if managed {
            (
                ramen_config::DR_CLUSTER_CONFIGMAP,
                ramen_config::CONTROLLER_TYPE_DR_CLUSTER,
            )
        } else {
            (
                ramen_config::HUB_CONFIGMAP,
                ramen_config::CONTROLLER_TYPE_HUB,
            )
        };
        let change = upsert_config(&client, ns, cm, controller, &profile)
            .await
            .with_context(|| format!("on {cluster}"))?;
        apply_secret(&client, &config::s3_secret(ns, &secret_name, &creds)).await?;
        let mut secrets = vec![format!("{ns}/{secret_name}")];
        if managed {
            let velero = &a.velero_namespace;
            if Api::<Namespace>::all(client.clone())
                .get_opt(velero)
                .await?
                .is_some()
            {
                apply_secret(
                    &client,
                    &config::velero_secret(velero, &secret_name, &creds),
                )
                .await?;
                secrets.push(format!(
                    "{velero}/{}",
                    drbridge_dr::consts::velero_secret_name(&secret_name)
                ));
            } else {
                notes.push(format!(
                    "namespace {velero} does not exist: install Velero, then run this again for its \
                     copy of the credentials"
                ));
            }
        }
        written.push(S3Written {
            cluster,
            config_map: format!("{ns}/{cm}"),
            profile: change,
            secrets,
            notes,
        });
    }
    match g.output {
        Output::Table => {
            let mut t = Table::new(["CLUSTER", "CONFIGMAP", "PROFILE", "SECRETS"]);
            for w in &written {
                t.row([
                    w.cluster.clone(),
                    w.config_map.clone(),
                    format!("{} {}", a.name, w.profile),
                    w.secrets.join(", "),
                ]);
            }
            print!("{}", t.render());
            for w in &written {
                for n in &w.notes {
                    say(g.output, &format!("{}: {n}", w.cluster));
                }
            }
            if a.managed_kubeconfig.is_empty() {
                say(
                    g.output,
                    "Managed clusters need the same profile: run again with --managed-kubeconfig \
                     NAME=KUBECONFIG, or let Ramen distribute it (deploymentAutomationEnabled).",
                );
            }
            Ok(())
        }
        out => emit(
            out,
            &json!({"profile": serde_json::to_value(&profile)?, "written": written}),
        ),
    }
}

pub(super) async fn s3_profile_list(g: &Global) -> anyhow::Result<()> {
    let client = g.hub_client().await?;
    let profiles = hub::profiles(&client, &g.ramen_namespace).await?;
    match g.output {
        Output::Table => {
            let mut t = Table::new(["NAME", "BUCKET", "ENDPOINT", "REGION", "SECRET"]);
            for p in &profiles {
                t.row([
                    p.s3_profile_name.clone(),
                    p.s3_bucket.clone(),
                    p.s3_compatible_endpoint.clone(),
                    p.s3_region.clone(),
                    format!("{}/{}", p.s3_secret_ref.namespace, p.s3_secret_ref.name),
                ]);
            }
            if t.is_empty() {
                say(
                    g.output,
                    &format!(
                        "No S3 profiles in {}/{}.",
                        g.ramen_namespace,
                        ramen_config::HUB_CONFIGMAP
                    ),
                );
            } else {
                print!("{}", t.render());
            }
            Ok(())
        }
        out => emit(out, &serde_json::to_value(&profiles)?),
    }
}
