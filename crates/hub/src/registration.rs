//! `Registration.Join` (join listener, no client certificate) and `Renewal.Renew` (mutual-TLS
//! listener): the hub signs agents' CSRs for the cluster name it already knows, from a join
//! token or from the presented certificate. See docs/security.md.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use drbridge_proto::v1 as pb;
use drbridge_tls::{CertInfo, ClusterName, RemoteAddr, cert_info_pem};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::clusters::{self, HubCa};
use crate::grpc::{CertificateInfo, ClusterIdentity};
use crate::identity::{
    AcceptedCert, Identities, IdentityRecord, RecordError, Refusal, update_record,
};
use crate::join_token::{JoinToken, TokenError, TokenRecord};
use crate::metrics::Metrics;

/// Default lifetime of the client certificates the hub signs.
pub const DEFAULT_CERT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Largest Join/Renew request accepted: a CSR and a token are a few KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Registration calls in flight at once; more wait, and give up after [`QUEUE_TIMEOUT`].
const CONCURRENCY: usize = 8;
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct RegistrationConfig {
    /// Namespace of the CA Secret, join tokens and identity records.
    pub namespace: String,
    /// Lifetime of signed client certificates.
    pub cert_validity: Duration,
    /// Refuse renewals of clusters without an identity record (certificates from elsewhere).
    pub require_join: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            namespace: clusters::DEFAULT_NAMESPACE.to_owned(),
            cert_validity: DEFAULT_CERT_VALIDITY,
            require_join: false,
        }
    }
}

/// Signs CSRs for joins and renewals.
pub struct Registrar {
    client: kube::Client,
    cfg: RegistrationConfig,
    identities: Identities,
    metrics: Metrics,
    permits: Semaphore,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Registrar {
    pub fn new(
        client: kube::Client,
        cfg: RegistrationConfig,
        identities: Identities,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            cfg,
            identities,
            metrics,
            permits: Semaphore::new(CONCURRENCY),
        })
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    async fn ca(&self) -> Result<HubCa, Status> {
        clusters::load_ca(&self.client, &self.cfg.namespace)
            .await
            .map_err(|e| {
                warn!(error = %e, "cannot load the CA");
                Status::unavailable(format!("the hub cannot sign certificates: {e}"))
            })
    }

    fn sign(
        &self,
        ca: &HubCa,
        csr_pem: &str,
        cluster: &ClusterName,
    ) -> Result<(String, CertInfo), Status> {
        let cert_pem = ca
            .ca
            .sign_csr(csr_pem, cluster, self.cfg.cert_validity)
            .map_err(|e| Status::invalid_argument(format!("certificate signing request: {e}")))?;
        let info = cert_info_pem(cert_pem.as_bytes())
            .map_err(|e| Status::internal(format!("reading the signed certificate: {e}")))?;
        Ok((cert_pem, info))
    }

    /// Redeems a join token: checks it, signs the CSR for the token's cluster, consumes the
    /// token (at most once, even under concurrent calls), and makes the new certificate the
    /// only one the cluster's identity record accepts.
    pub async fn join(&self, req: pb::JoinRequest) -> Result<pb::JoinResponse, Status> {
        let _permit = self.permit().await?;
        let refused = |e: TokenError| Status::unauthenticated(e.to_string());
        let token = JoinToken::parse(&req.token).map_err(refused)?;
        let api = self.secrets();
        let name = token.secret_name();
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|e| Status::unavailable(format!("reading the join token: {e}")))?
            .ok_or_else(|| refused(TokenError::Invalid))?;
        let record = TokenRecord::from_secret(&secret).map_err(|e| {
            warn!(error = %e, "join token record unusable");
            refused(TokenError::Invalid)
        })?;
        match record.verify(&token, Utc::now()) {
            Ok(()) => {}
            Err(e @ TokenError::Expired(_)) => {
                // Of no use to anyone any more.
                let _ = api.delete(&name, &guarded(&secret)).await;
                return Err(refused(e));
            }
            Err(e) => return Err(refused(e)),
        }
        let cluster = record.cluster.clone();
        if !req.cluster.is_empty() && req.cluster != cluster.as_str() {
            return Err(Status::failed_precondition(format!(
                "this join token is for cluster {cluster:?}, but the agent is configured as {:?}",
                req.cluster
            )));
        }
        let ca = self.ca().await?;
        let (cert_pem, info) = self.sign(&ca, &req.csr_pem, &cluster)?;

        // Consume: the delete succeeds only for the version of the Secret checked above, so of
        // two calls with one token only one gets here.
        match api.delete(&name, &guarded(&secret)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                return Err(refused(TokenError::Invalid));
            }
            Err(e) => {
                return Err(Status::unavailable(format!(
                    "consuming the join token: {e}"
                )));
            }
        }
        let accepted = accepted(&info, Utc::now());
        update_record(&self.client, &self.cfg.namespace, cluster.as_str(), |old| {
            let epoch = old.as_ref().map_or(0, |r| r.epoch);
            if epoch != record.epoch {
                return Err(Refusal::Removed(cluster.to_string()));
            }
            Ok(IdentityRecord::joined(epoch, accepted.clone()))
        })
        .await
        .map_err(record_status)?;
        info!(%cluster, serial = %info.serial, token_id = token.id(), "cluster joined");
        Ok(pb::JoinResponse {
            cert_pem,
            ca_pem: ca.bundle_pem,
            cluster: cluster.into_string(),
        })
    }

    /// Signs a new certificate for the cluster of the presented, still accepted, certificate.
    pub async fn renew(
        &self,
        cluster: &str,
        presented: &CertificateInfo,
        req: pb::RenewRequest,
    ) -> Result<pb::RenewResponse, Status> {
        let _permit = self.permit().await?;
        self.identities
            .check(cluster, &presented.serial)
            .map_err(|r| Status::permission_denied(r.to_string()))?;
        let name = ClusterName::new(cluster).map_err(|e| Status::unauthenticated(e.to_string()))?;
        let ca = self.ca().await?;
        let (cert_pem, info) = self.sign(&ca, &req.csr_pem, &name)?;
        let now = Utc::now();
        let new = accepted(&info, now);
        let require_join = self.cfg.require_join;
        // Decided again on the record being replaced: the watch may lag a removal.
        update_record(&self.client, &self.cfg.namespace, cluster, |old| {
            let mut record = match old {
                Some(r) => {
                    r.accepts(cluster, &presented.serial, now)?;
                    r
                }
                None if require_join => return Err(Refusal::NotJoined(cluster.to_owned())),
                None => IdentityRecord::default(),
            };
            let issued = record
                .certificates
                .iter()
                .find(|c| c.serial == presented.serial)
                .map_or(now, |c| c.issued);
            let current = AcceptedCert {
                serial: presented.serial.clone(),
                not_after: DateTime::<Utc>::from(presented.not_after),
                issued,
            };
            record.renewed(current, new.clone(), now);
            Ok(record)
        })
        .await
        .map_err(record_status)?;
        info!(%cluster, old_serial = %presented.serial, serial = %info.serial, "certificate renewed");
        Ok(pb::RenewResponse {
            cert_pem,
            ca_pem: ca.bundle_pem,
        })
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Status> {
        match tokio::time::timeout(QUEUE_TIMEOUT, self.permits.acquire()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Status::resource_exhausted(
                "too many registration calls; retry later",
            )),
        }
    }
}

fn accepted(info: &CertInfo, now: DateTime<Utc>) -> AcceptedCert {
    AcceptedCert {
        serial: info.serial.clone(),
        not_after: DateTime::<Utc>::from(info.not_after),
        issued: now,
    }
}

/// Delete options that apply only to exactly this version of `secret`.
fn guarded(secret: &Secret) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: secret.metadata.resource_version.clone(),
            uid: secret.metadata.uid.clone(),
        }),
        ..Default::default()
    }
}

fn record_status(e: RecordError) -> Status {
    match e {
        RecordError::Refused(r) => Status::permission_denied(r.to_string()),
        other => {
            warn!(error = %other, "cannot write the identity record");
            Status::unavailable(other.to_string())
        }
    }
}

fn result_label(r: &Result<impl Sized, Status>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(s) => match s.code() {
            tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::FailedPrecondition => "refused",
            tonic::Code::InvalidArgument => "invalid",
            _ => "error",
        },
    }
}

/// The `Registration` service, for the join listener.
#[derive(Clone, Debug)]
pub struct JoinService(pub Arc<Registrar>);

#[tonic::async_trait]
impl pb::registration_server::Registration for JoinService {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let peer = req.extensions().get::<RemoteAddr>().map(|a| a.0);
        let result = self.0.join(req.into_inner()).await;
        self.0.metrics.registered("join", result_label(&result));
        if let Err(s) = &result {
            warn!(peer = ?peer, code = ?s.code(), reason = s.message(), "join refused");
        }
        result.map(Response::new)
    }
}

/// The `Renewal` service, for the mutual-TLS listener (behind [`crate::identity_from_tls`]).
#[derive(Clone, Debug)]
pub struct RenewService(pub Arc<Registrar>);

#[tonic::async_trait]
impl pb::renewal_server::Renewal for RenewService {
    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let (Some(ClusterIdentity(cluster)), Some(cert)) = (
            req.extensions().get::<ClusterIdentity>().cloned(),
            req.extensions().get::<CertificateInfo>().cloned(),
        ) else {
            self.0.metrics.registered("renew", "refused");
            return Err(Status::unauthenticated("no client certificate"));
        };
        if cert.not_after <= SystemTime::now() {
            self.0.metrics.registered("renew", "refused");
            return Err(Status::unauthenticated(
                "the client certificate has expired",
            ));
        }
        let result = self.0.renew(&cluster, &cert, req.into_inner()).await;
        self.0.metrics.registered("renew", result_label(&result));
        if let Err(s) = &result {
            warn!(%cluster, serial = %cert.serial, code = ?s.code(), reason = s.message(), "renewal refused");
        }
        result.map(Response::new)
    }
}
