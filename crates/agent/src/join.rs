//! Getting and keeping the agent's client certificate without copying private keys around.
//!
//! - **Join.** With a join token (`drbridge cluster join NAME` on the hub) and no
//!   certificate yet, the agent generates its key, sends only a CSR and the token to the hub's
//!   join endpoint (server-authenticated TLS: the hub is verified against `--join-ca`), and
//!   writes the key (0600), the certificate and the hub's CA bundle to the `--tls-*` files.
//! - **Persistence.** With `--tls-secret`, the same material is kept in a Secret on the
//!   managed cluster, so a restarted pod (empty volume) keeps its identity instead of needing
//!   a new token. The Secret notes which token made it: a different token means the operator
//!   wants a fresh identity, and the agent joins again.
//! - **Rotation.** When two thirds of the certificate's lifetime have passed, the agent sends a
//!   CSR for a fresh key to `Renewal.Renew` over its current mutual-TLS identity and replaces
//!   the files (each atomically). Every new connection reads the files, so the next connection
//!   uses the new certificate; the hub ends a stream when the certificate it was opened with
//!   expires, so no stream outlives its certificate and no restart is needed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use drbridge_tls::{CertInfo, ChannelOptions, TlsPaths, cert_info_pem, pki};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use tokio::sync::watch;
use tracing::{Instrument, error, info, info_span, warn};

use crate::args::{Args, token_id};
use crate::pb;
use crate::retry::Backoff;

/// Annotation on the agent's TLS Secret naming the id (the public half) of the join token
/// that made it.
pub const TOKEN_ID_ANNOTATION: &str = "drbridge.io/join-token-id";
/// Default port of the hub's join listener.
pub const DEFAULT_JOIN_PORT: u16 = 8444;
const FIELD_MANAGER: &str = "drbridge-agent";

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid endpoint {0:?}: must be https://host:port")]
    Endpoint(String),
    #[error("{0}")]
    Tls(#[from] drbridge_tls::Error),
    #[error("the hub refused the {rpc}: {code:?}: {message}")]
    Refused {
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("the {rpc} failed: {message}")]
    Transient { rpc: &'static str, message: String },
    #[error("the hub returned a certificate for cluster {got:?}, but this agent is {want:?}")]
    WrongCluster { want: String, got: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS Secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("stopped")]
    Stopped,
}

impl JoinError {
    /// Worth retrying: the hub or the network, not the request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            JoinError::Transient { .. } | JoinError::Secret { .. } | JoinError::Tls(_)
        )
    }

    fn from_status(rpc: &'static str, s: tonic::Status) -> Self {
        use tonic::Code::*;
        match s.code() {
            Unauthenticated | PermissionDenied | FailedPrecondition | InvalidArgument
            | Unimplemented => JoinError::Refused {
                rpc,
                code: s.code(),
                message: s.message().to_owned(),
            },
            _ => JoinError::Transient {
                rpc,
                message: format!("{:?}: {}", s.code(), s.message()),
            },
        }
    }
}

/// Key, certificate and CA bundle, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: String,
    /// Id of the join token that made this identity, if known.
    pub token_id: Option<String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// Writes the three files, each atomically, the key with mode 0600. The certificate goes
    /// last: a reader that sees the new certificate sees the new key too.
    pub fn write(&self, paths: &TlsPaths) -> Result<(), JoinError> {
        for p in [&paths.key, &paths.cert, &paths.ca] {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| JoinError::Io {
                    path: dir.to_owned(),
                    source,
                })?;
            }
        }
        if !self.ca_pem.is_empty()
            && std::fs::read_to_string(&paths.ca).ok().as_deref() != Some(&self.ca_pem)
        {
            pki::write_atomic(&paths.ca, self.ca_pem.as_bytes(), 0o644)?;
        }
        pki::write_atomic(&paths.key, self.key_pem.as_bytes(), 0o600)?;
        pki::write_atomic(&paths.cert, self.cert_pem.as_bytes(), 0o644)?;
        Ok(())
    }

    fn read(paths: &TlsPaths) -> Option<Material> {
        Some(Material {
            key_pem: std::fs::read_to_string(&paths.key).ok()?,
            cert_pem: std::fs::read_to_string(&paths.cert).ok()?,
            ca_pem: std::fs::read_to_string(&paths.ca).unwrap_or_default(),
            token_id: None,
        })
    }

    fn info(&self) -> Option<CertInfo> {
        cert_info_pem(self.cert_pem.as_bytes()).ok()
    }
}

/// The agent's TLS Secret on its own cluster.
#[derive(Clone)]
pub struct SecretStore {
    api: Api<Secret>,
    name: String,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
        }
    }

    fn err(&self) -> impl FnOnce(kube::Error) -> JoinError + '_ {
        |source| JoinError::Secret {
            name: self.name.clone(),
            source,
        }
    }

    pub async fn load(&self) -> Result<Option<Material>, JoinError> {
        let Some(secret) = self.api.get_opt(&self.name).await.map_err(self.err())? else {
            return Ok(None);
        };
        let field = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let (Some(cert_pem), Some(key_pem)) = (field("tls.crt"), field("tls.key")) else {
            return Ok(None);
        };
        Ok(Some(Material {
            key_pem,
            cert_pem,
            ca_pem: field("ca.crt").unwrap_or_default(),
            token_id: secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(TOKEN_ID_ANNOTATION))
                .cloned(),
        }))
    }

    /// Creates or overwrites the Secret (server-side apply, so it needs no prior read).
    pub async fn save(&self, m: &Material) -> Result<(), JoinError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                annotations: m
                    .token_id
                    .as_ref()
                    .map(|id| BTreeMap::from([(TOKEN_ID_ANNOTATION.to_owned(), id.clone())])),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_owned(), ByteString(m.cert_pem.clone().into())),
                ("tls.key".to_owned(), ByteString(m.key_pem.clone().into())),
                ("ca.crt".to_owned(), ByteString(m.ca_pem.clone().into())),
            ])),
            ..Default::default()
        };
        let value = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": secret.metadata,
            "type": secret.type_,
            "data": secret.data,
        });
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }
}

/// Everything the agent needs to join and to renew. `Debug` shows only the token's id.
#[derive(Clone)]
pub struct Credentials {
    /// This cluster's name (checked against the token's).
    pub cluster: String,
    /// The hub's mutual-TLS endpoint (Renew).
    pub hub_endpoint: String,
    /// The hub's join endpoint (Join).
    pub join_endpoint: String,
    /// Name expected in the hub's certificate, on both endpoints.
    pub server_name: String,
    /// Where the agent's files are.
    pub paths: TlsPaths,
    /// CA certificates that verify the hub during the join.
    pub join_ca: PathBuf,
    pub token: Option<String>,
    pub store: Option<SecretStore>,
    pub channel: ChannelOptions,
    /// Retry pauses of joins and renewals.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("cluster", &self.cluster)
            .field("hub_endpoint", &self.hub_endpoint)
            .field("join_endpoint", &self.join_endpoint)
            .field("server_name", &self.server_name)
            .field("paths", &self.paths)
            .field("join_ca", &self.join_ca)
            .field("token_id", &self.token_id())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Where [`Credentials::ensure`] got the agent's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provisioned {
    /// Joined now with the token; the certificate's serial.
    Joined(String),
    /// Written from the TLS Secret.
    Restored,
    /// The files were there.
    Existing,
    /// No files, no Secret, no token: the connection will fail until files appear.
    Missing,
}

impl Credentials {
    /// From the agent's command line.
    pub fn from_args(args: &Args, client: &kube::Client) -> Result<Self, JoinError> {
        let server_name = args
            .server_name()
            .map_err(|_| JoinError::Endpoint(args.hub_endpoint.clone()))?;
        let join = &args.join;
        let join_endpoint = match &join.join_endpoint {
            Some(e) => e.clone(),
            None => default_join_endpoint(&args.hub_endpoint)?,
        };
        let store = join.tls_secret.as_ref().map(|name| {
            let ns = join
                .tls_secret_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            SecretStore::new(client.clone(), &ns, name)
        });
        Ok(Self {
            cluster: args.cluster.clone(),
            hub_endpoint: args.hub_endpoint.clone(),
            join_endpoint,
            server_name,
            paths: TlsPaths::new(&args.tls_cert, &args.tls_key, &args.tls_ca),
            join_ca: join.join_ca.clone().unwrap_or_else(|| args.tls_ca.clone()),
            token: join.join_token.clone().filter(|t| !t.trim().is_empty()),
            store,
            channel: ChannelOptions::default(),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(args.max_backoff_seconds.max(1)),
        })
    }

    fn token_id(&self) -> Option<&str> {
        self.token.as_deref().and_then(token_id)
    }

    /// Makes sure the files hold a usable identity: from the TLS Secret, from the files
    /// already there, or by joining with the token (retrying while the hub is unreachable).
    pub async fn ensure(
        &self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Provisioned, JoinError> {
        let now = SystemTime::now();
        let fresh = |m: &Material| m.info().is_some_and(|i| i.not_after > now);
        let stored = match &self.store {
            Some(store) => store.load().await?,
            None => None,
        };
        let new_token = |m: &Material| {
            self.token_id()
                .is_some_and(|id| m.token_id.as_deref() != Some(id))
        };
        if let Some(m) = stored {
            // A token other than the one that made this identity: the operator asks for a
            // fresh one. An expired identity with a token: the token may be the way back.
            if !(self.token.is_some() && (new_token(&m) || !fresh(&m))) {
                if Material::read(&self.paths)
                    .as_ref()
                    .map(|f| (&f.key_pem, &f.cert_pem, &f.ca_pem))
                    != Some((&m.key_pem, &m.cert_pem, &m.ca_pem))
                {
                    m.write(&self.paths)?;
                }
                info!(secret = ?self.store, "client certificate restored from the TLS Secret");
                return Ok(Provisioned::Restored);
            }
        } else if let Some(m) = Material::read(&self.paths)
            && (self.token.is_none() || fresh(&m))
        {
            return Ok(Provisioned::Existing);
        }
        if self.token.is_none() {
            return Ok(Provisioned::Missing);
        }
        let mut backoff = Backoff::new(self.backoff_base, self.backoff_cap);
        loop {
            match self.join_once().await {
                Ok(serial) => return Ok(Provisioned::Joined(serial)),
                Err(e) if e.is_transient() => {
                    let delay = backoff.next_delay();
                    warn!(error = %e, ?delay, "cannot join the hub yet; retrying");
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => return Err(JoinError::Stopped),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One join: key, CSR, `Registration.Join`, files (and Secret). Returns the serial.
    pub async fn join_once(&self) -> Result<String, JoinError> {
        let token = self.token.clone().unwrap_or_default();
        let name = drbridge_tls::ClusterName::new(self.cluster.clone())?;
        let (key_pem, csr_pem) = pki::generate_key_and_csr(&name)?;
        let channel = drbridge_tls::connect_channel_without_client_cert(
            &self.join_endpoint,
            &self.server_name,
            &self.join_ca,
            self.channel.clone(),
        )
        .await?;
        let resp = pb::registration_client::RegistrationClient::new(channel)
            .join(pb::JoinRequest {
                token,
                csr_pem,
                cluster: self.cluster.clone(),
            })
            .await
            .map_err(|s| JoinError::from_status("join", s))?
            .into_inner();
        let material = Material {
            key_pem,
            cert_pem: resp.cert_pem,
            ca_pem: resp.ca_pem,
            token_id: self.token_id().map(str::to_owned),
        };
        let info = self.check(&material)?;
        // The Secret first: once it holds the identity, a restart cannot lose it.
        if let Some(store) = &self.store {
            store.save(&material).await?;
        }
        material.write(&self.paths)?;
        info!(cluster = %self.cluster, serial = %info.serial, "joined the hub");
        Ok(info.serial)
    }

    fn check(&self, m: &Material) -> Result<CertInfo, JoinError> {
        let info = cert_info_pem(m.cert_pem.as_bytes())?;
        if info.cluster.as_str() != self.cluster {
            return Err(JoinError::WrongCluster {
                want: self.cluster.clone(),
                got: info.cluster.to_string(),
            });
        }
        Ok(info)
    }

    /// The certificate in the files now.
    pub fn current(&self) -> Result<CertInfo, JoinError> {
        let pem = std::fs::read(&self.paths.cert).map_err(|source| JoinError::Io {
            path: self.paths.cert.clone(),
            source,
        })?;
        Ok(cert_info_pem(&pem)?)
    }

    /// One renewal over the current identity; returns the new certificate.
    pub async fn renew_once(&self) -> Result<CertInfo, JoinError> {
        let name = drbridge_tls::ClusterName::new(self.cluster.clone())?;
        let (key_pem, csr_pem) = pki::generate_key_and_csr(&name)?;
        let channel = drbridge_tls::connect_channel(
            &self.hub_endpoint,
            &self.server_name,
            &self.paths,
            self.channel.clone(),
        )
        .await?;
        let resp = pb::renewal_client::RenewalClient::new(channel)
            .renew(pb::RenewRequest { csr_pem })
            .await
            .map_err(|s| JoinError::from_status("renewal", s))?
            .into_inner();
        let token_id = match &self.store {
            Some(store) => store.load().await?.and_then(|m| m.token_id),
            None => None,
        };
        let ca_pem = if resp.ca_pem.is_empty() {
            std::fs::read_to_string(&self.paths.ca).unwrap_or_default()
        } else {
            resp.ca_pem
        };
        let material = Material {
            key_pem,
            cert_pem: resp.cert_pem,
            ca_pem,
            token_id,
        };
        let info = self.check(&material)?;
        if let Some(store) = &self.store {
            store.save(&material).await?;
        }
        material.write(&self.paths)?;
        Ok(info)
    }

    /// Renews whenever two thirds of the current certificate's lifetime have passed, until
    /// `shutdown`. Failures are retried with backoff; they are errors in the log once the
    /// certificate has expired, because then only a new join token helps.
    pub async fn rotate(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.backoff_base, self.backoff_cap);
        loop {
            let wait = match self.current() {
                Ok(info) => {
                    let at = renewal_time(&info);
                    info!(serial = %info.serial, renew_in = ?at.duration_since(SystemTime::now()).unwrap_or_default(), "next certificate renewal");
                    at.duration_since(SystemTime::now()).unwrap_or_default()
                }
                Err(e) => {
                    warn!(error = %e, "cannot read the client certificate");
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(wait) => {}
            }
            loop {
                match self.renew_once().await {
                    Ok(info) => {
                        info!(serial = %info.serial, "client certificate renewed");
                        backoff.reset();
                        break;
                    }
                    Err(e) => {
                        let expired = self
                            .current()
                            .map(|i| i.not_after <= SystemTime::now())
                            .unwrap_or(true);
                        if expired {
                            error!(error = %e, "the client certificate expired before it could be renewed; the agent needs a new join token (drbridge cluster join)");
                        } else {
                            warn!(error = %e, "certificate renewal failed; retrying");
                        }
                        let delay = backoff.next_delay();
                        tokio::select! {
                            _ = shutdown.wait_for(|s| *s) => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
    }
}

/// When to renew `cert`: after two thirds of its validity (from `notBefore`, which the hub
/// back-dates by at most a tenth of the validity).
pub fn renewal_time(cert: &CertInfo) -> SystemTime {
    let life = cert
        .not_after
        .duration_since(cert.not_before)
        .unwrap_or_default();
    cert.not_before + life.mul_f64(2.0 / 3.0)
}

/// `https://host:8444` for the hub endpoint `https://host:port`.
pub fn default_join_endpoint(hub_endpoint: &str) -> Result<String, JoinError> {
    let bad = || JoinError::Endpoint(hub_endpoint.to_owned());
    let uri: tonic::codegen::http::Uri = hub_endpoint.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad());
    }
    let host = uri.host().ok_or_else(bad)?;
    Ok(format!("https://{host}:{DEFAULT_JOIN_PORT}"))
}

/// Used by `run`: joins or restores as needed and, when this agent manages its own
/// certificate, spawns the rotation task.
pub async fn prepare(
    args: &Args,
    client: &kube::Client,
    shutdown: watch::Receiver<bool>,
) -> Result<Option<tokio::task::JoinHandle<()>>, JoinError> {
    let creds = Credentials::from_args(args, client)?;
    let mut stop = shutdown.clone();
    let provisioned = creds
        .ensure(&mut stop)
        .instrument(info_span!("join"))
        .await?;
    info!(?provisioned, "client certificate in place");
    let rotate = args.join.rotate_certificate
        || creds.token.is_some()
        || matches!(provisioned, Provisioned::Joined(_) | Provisioned::Restored);
    if !rotate {
        return Ok(None);
    }
    Ok(Some(tokio::spawn(
        creds
            .rotate(shutdown)
            .instrument(info_span!("certificate_rotation")),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_endpoint_defaults_to_the_hub_host_on_8444() {
        assert_eq!(
            default_join_endpoint("https://hub.example:8443").unwrap(),
            "https://hub.example:8444"
        );
        assert_eq!(
            default_join_endpoint("https://10.0.0.1:443").unwrap(),
            "https://10.0.0.1:8444"
        );
        assert!(default_join_endpoint("http://hub:8443").is_err());
    }

    #[test]
    fn renewal_after_two_thirds_of_the_lifetime() {
        let ca = pki::Ca::generate("ca").unwrap();
        let issued = ca
            .issue_client(&"dr1".parse().unwrap(), Duration::from_secs(30))
            .unwrap();
        let info = cert_info_pem(issued.cert_pem.as_bytes()).unwrap();
        let at = renewal_time(&info);
        // 30 s valid, back-dated 3 s: renew 22 s after notBefore, 19 s from now (±1 s of
        // rounding to whole seconds).
        let from_now = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .as_secs_f64();
        assert!((17.0..=20.0).contains(&from_now), "{from_now}");
    }

    #[test]
    fn material_writes_a_private_key_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths::in_dir(dir.path().join("sub"), "tls", "ca");
        let m = Material {
            key_pem: "k".into(),
            cert_pem: "c".into(),
            ca_pem: "a".into(),
            token_id: Some("id".into()),
        };
        m.write(&paths).unwrap();
        let back = Material::read(&paths).unwrap();
        assert_eq!(
            (back.key_pem, back.cert_pem, back.ca_pem),
            ("k".into(), "c".into(), "a".into())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refusals_are_not_retried() {
        let e = JoinError::from_status("join", tonic::Status::unauthenticated("used"));
        assert!(!e.is_transient());
        let e = JoinError::from_status("join", tonic::Status::unavailable("down"));
        assert!(e.is_transient());
    }
}
