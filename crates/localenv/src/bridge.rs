//! What a cluster set needs before drbridge runs on it: the CRDs, a hub
//! namespace and a ManagedCluster per managed cluster (as registration would
//! make them), and a PKI with the hub's server certificate and one client
//! certificate per agent.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drbridge_api::cluster::ManagedCluster;
use drbridge_tls::{ClusterName, TlsPaths, pki::Ca};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::Error;

const MANAGER: &str = "drbridge-localenv";

/// Certificates of one drbridge installation, under `DIR/drbridge-pki`.
#[derive(Clone, Debug)]
pub struct BridgePki {
    pub dir: PathBuf,
}

/// How long local certificates live; `drbridge cluster join` issues short-lived ones.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

impl BridgePki {
    /// Creates the CA and the hub's serving certificate (for `localhost` and
    /// 127.0.0.1), or keeps them if they exist.
    pub fn ensure(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let pki = BridgePki {
            dir: dir.to_path_buf(),
        };
        if !pki.ca_cert().exists() {
            let ca = Ca::generate("drbridge-local-ca")?;
            ca.to_issued().write(dir, "ca")?;
            ca.issue_server(
                &["localhost", "drbridge-hub"],
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
                VALIDITY,
            )?
            .write(dir, "hub")?;
        }
        Ok(pki)
    }

    fn ca(&self) -> Result<Ca, Error> {
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e));
        Ok(Ca::from_pem(
            &read(self.ca_cert())?,
            &read(self.dir.join("ca.key"))?,
        )?)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The hub's serving certificate.
    pub fn hub(&self) -> TlsPaths {
        TlsPaths::new(
            self.dir.join("hub.crt"),
            self.dir.join("hub.key"),
            self.ca_cert(),
        )
    }

    /// An agent's client certificate, issued on first use.
    pub fn agent(&self, cluster: &str) -> Result<TlsPaths, Error> {
        let stem = format!("agent-{cluster}");
        let paths = TlsPaths::new(
            self.dir.join(format!("{stem}.crt")),
            self.dir.join(format!("{stem}.key")),
            self.ca_cert(),
        );
        if !paths.cert.exists() {
            let name = ClusterName::new(cluster)?;
            self.ca()?
                .issue_client(&name, VALIDITY)?
                .write(&self.dir, &stem)?;
        }
        Ok(paths)
    }
}

/// Installs (or updates) CRDs with server-side apply and waits until each is
/// Established.
pub async fn apply_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(MANAGER).force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &pp, &Patch::Apply(crd)).await?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let cond = kube::runtime::conditions::is_crd_established();
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(api.clone(), &name, cond),
        )
        .await
        .map_err(|_| Error::Start {
            what: format!("CRD {name}"),
            why: "not Established within 30s".into(),
            log: PathBuf::new(),
        })?
        .map_err(|e| Error::Start {
            what: format!("CRD {name}"),
            why: e.to_string(),
            log: PathBuf::new(),
        })?;
    }
    Ok(())
}

/// Prepares the hub: OCM CRDs, and for each managed cluster its namespace and
/// its ManagedCluster (labelled as OCM's registration and Ramen's tooling expect).
pub async fn prepare_hub(hub: &kube::Client, managed: &[String]) -> Result<(), Error> {
    apply_crds(hub, &drbridge_api::crds::hub()).await?;
    let pp = PatchParams::apply(MANAGER).force();
    let nss: Api<Namespace> = Api::all(hub.clone());
    let mcs: Api<ManagedCluster> = Api::all(hub.clone());
    for name in managed {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        nss.patch(name, &pp, &Patch::Apply(&ns)).await?;
        let mc = serde_json::json!({
            "apiVersion": "cluster.open-cluster-management.io/v1",
            "kind": "ManagedCluster",
            "metadata": {
                "name": name,
                "labels": {
                    "name": name,
                    "cluster.open-cluster-management.io/clusterset": "default",
                },
            },
            "spec": { "hubAcceptsClient": true },
        });
        mcs.patch(name, &pp, &Patch::Apply(&mc)).await?;
    }
    Ok(())
}

/// Prepares a managed cluster: drbridge's agent CRDs.
pub async fn prepare_managed(client: &kube::Client) -> Result<(), Error> {
    apply_crds(client, &drbridge_api::crds::agent()).await
}
