//! `Registration.Join` (join listener, no client certificate) and `Renewal.Renew` (mutual-TLS
//! listener): the hub signs agents' CSRs for the cluster name it already knows, from a join
//! token or from the presented certificate. See docs/security.md.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use drbridge_proto::v1 as pb;
use drbridge_tls::{CertInfo, ClusterName, RemoteAddr, cert_info_pem};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::clusters::{self, HubCa};
use crate::events::HubEvents;
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
/// Joins in flight at once (unauthenticated callers with a well-formed token); more wait, and
/// give up after [`QUEUE_TIMEOUT`].
const JOIN_CONCURRENCY: usize = 8;
/// Renewals in flight at once: a pool of their own, so joins (whose callers are not
/// authenticated) can never starve the renewals of clusters already joined.
const RENEW_CONCURRENCY: usize = 8;
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);
/// Annotation on a join token being redeemed (RFC 3339 time of the claim). The token is
/// deleted only after the identity record is written, and released if that write fails; a
/// claim older than [`CLAIM_TTL`] (the hub stopped mid-join) no longer counts.
pub const REDEEMING_ANNOTATION: &str = "drbridge.io/redeeming-since";
const CLAIM_TTL: Duration = Duration::from_secs(120);

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
    events: HubEvents,
    join_permits: Semaphore,
    renew_permits: Semaphore,
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
        events: HubEvents,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            cfg,
            identities,
            metrics,
            events,
            join_permits: Semaphore::new(JOIN_CONCURRENCY),
            renew_permits: Semaphore::new(RENEW_CONCURRENCY),
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

    /// Redeems a join token: checks it, signs the CSR for the token's cluster, claims the
    /// token (at most one caller, even under concurrent calls), makes the new certificate the
    /// only one the cluster's identity record accepts, and only then deletes the token: a
    /// failed record write releases the claim, so the token is not used up.
    pub async fn join(&self, req: pb::JoinRequest) -> Result<pb::JoinResponse, Status> {
        let refused = |e: TokenError| Status::unauthenticated(e.to_string());
        // Parsed before a permit is taken: garbage costs no one a place in the queue.
        let token = JoinToken::parse(&req.token).map_err(refused)?;
        let _permit = permit(&self.join_permits).await?;
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
        if being_redeemed(&secret, Utc::now()) {
            return Err(refused(TokenError::Invalid));
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

        // Claim: the write succeeds only for the version of the Secret checked above, so of
        // two calls with one token only one gets here.
        let claimed = claim(&secret, Utc::now());
        let claimed = match api.replace(&name, &PostParams::default(), &claimed).await {
            Ok(c) => c,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                return Err(refused(TokenError::Invalid));
            }
            Err(e) => {
                return Err(Status::unavailable(format!("claiming the join token: {e}")));
            }
        };
        let accepted = accepted(&info, Utc::now());
        let written = update_record(&self.client, &self.cfg.namespace, cluster.as_str(), |old| {
            let epoch = old.as_ref().map_or(0, |r| r.epoch);
            if old.as_ref().and_then(|r| r.join_token.as_deref()) == Some(token.id()) {
                return Err(Refusal::TokenUsed);
            }
            if epoch != record.epoch {
                return Err(Refusal::Removed(cluster.to_string()));
            }
            let mut joined = IdentityRecord::joined(epoch, accepted.clone());
            joined.join_token = Some(token.id().to_owned());
            Ok(joined)
        })
        .await;
        if let Err(e) = written {
            // Not used up: the next attempt with this token may succeed.
            let mut released = claimed.clone();
            if let Some(a) = released.metadata.annotations.as_mut() {
                a.remove(REDEEMING_ANNOTATION);
            }
            if let Err(re) = api.replace(&name, &PostParams::default(), &released).await {
                warn!(error = %re, "cannot release the join token's claim; it lapses after {CLAIM_TTL:?}");
            }
            return Err(record_status(e));
        }
        // Consumed. Should this delete fail, the claim and the record's `join_token` still
        // refuse the token.
        if let Err(e) = api.delete(&name, &guarded(&claimed)).await {
            warn!(error = %e, "the join token was used but could not be deleted");
        }
        info!(%cluster, serial = %info.serial, token_id = token.id(), "cluster joined");
        self.events.agent_joined(cluster.as_str(), &info.serial);
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
        let _permit = permit(&self.renew_permits).await?;
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
        self.events
            .certificate_rotated(cluster, &presented.serial, &info.serial);
        Ok(pb::RenewResponse {
            cert_pem,
            ca_pem: ca.bundle_pem,
        })
    }
}

async fn permit(pool: &Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, Status> {
    match tokio::time::timeout(QUEUE_TIMEOUT, pool.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        _ => Err(Status::resource_exhausted(
            "too many registration calls; retry later",
        )),
    }
}

/// `secret` marked as being redeemed at `now` (write it guarded by its resourceVersion).
fn claim(secret: &Secret, now: DateTime<Utc>) -> Secret {
    let mut claimed = secret.clone();
    claimed.metadata.annotations.get_or_insert_default().insert(
        REDEEMING_ANNOTATION.to_owned(),
        drbridge_model::status::rfc3339(now),
    );
    claimed
}

/// Another join holds the token (its claim is younger than [`CLAIM_TTL`]).
fn being_redeemed(secret: &Secret, now: DateTime<Utc>) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REDEEMING_ANNOTATION))
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| {
            now.signed_duration_since(t.with_timezone(&Utc))
                < chrono::Duration::from_std(CLAIM_TTL).unwrap_or_default()
        })
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
        RecordError::Refused(r @ Refusal::TokenUsed) => Status::unauthenticated(r.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A "Kubernetes API" that accepts connections and never answers, so every call that
    /// reaches it holds its permit.
    async fn hanging_api() -> (kube::Client, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        (kube::Client::try_from(config).unwrap(), task)
    }

    fn join_request(token: String) -> pb::JoinRequest {
        pb::JoinRequest {
            token,
            csr_pem: String::new(),
            cluster: String::new(),
        }
    }

    /// Issue 17 item 13: unauthenticated join callers (here: many well-formed tokens whose
    /// calls hang on the API server) cannot take the permits renewals need, and a malformed
    /// token is refused without waiting for a permit at all.
    #[tokio::test(start_paused = true)]
    async fn joins_cannot_starve_renewals_and_bad_tokens_take_no_permit() {
        let (client, _api) = hanging_api().await;
        // Not listed yet: a renewal that gets its permit is refused at once (not queued).
        let ids = Identities::new(false);
        let reg = Registrar::new(
            client,
            RegistrationConfig::default(),
            ids,
            Metrics::default(),
            HubEvents::disabled(),
        );
        let mut joins = Vec::new();
        for _ in 0..32 {
            let reg = reg.clone();
            let token = JoinToken::generate().expose();
            joins.push(tokio::spawn(
                async move { reg.join(join_request(token)).await },
            ));
        }
        // Let every join run up to its API call.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let presented = CertificateInfo {
            serial: "aa".into(),
            not_after: SystemTime::now() + Duration::from_secs(3600),
        };
        let renewed = reg
            .renew(
                "dr1",
                &presented,
                pb::RenewRequest {
                    csr_pem: String::new(),
                },
            )
            .await
            .unwrap_err();
        assert_eq!(renewed.code(), tonic::Code::PermissionDenied, "{renewed:?}");
        let bad = reg
            .join(join_request("not-a-token".into()))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::Unauthenticated, "{bad:?}");
        for j in joins {
            j.abort();
        }
    }
}
