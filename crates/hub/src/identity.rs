//! Which client certificates the hub accepts for each cluster.
//!
//! The record of a cluster is the Secret `drbridge-identity-<cluster>` (type
//! `drbridge.io/cluster-identity`) in the hub's namespace. It lists the serial numbers of the
//! certificates the hub issued to that cluster and still accepts, or marks the cluster removed.
//! The hub watches these Secrets into [`Identities`], which the Dispatch and Renewal services
//! consult on every stream and call; a change re-checks the open streams at once.
//!
//! - Join: the record becomes exactly the new certificate, so a re-join supersedes every
//!   earlier certificate of the cluster.
//! - Renew: the new certificate is added; the presented one stays accepted until it expires
//!   (the agent may still be using it on an open stream, and a lost response must not lock
//!   it out); expired entries are pruned.
//! - Remove: the record becomes a tombstone (`removed`, no serials). Every certificate of the
//!   cluster is refused, including ones issued outside drbridge, until a new join.
//! - No record: certificates issued outside drbridge (an operator's own CA tooling,
//!   cert-manager) are accepted as before, unless the hub runs with `--require-join`.
//! - A record that existed and is deleted (by hand, or while the hub's watch was away) fails
//!   closed: it becomes a tombstone one epoch later, in memory at once and written back as a
//!   Secret, so it does not turn into "no record" and accept again the certificates it had
//!   superseded or revoked. Only a new join lifts it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::join_token::CLUSTER_LABEL;

/// `type` of identity-record Secrets.
pub const IDENTITY_SECRET_TYPE: &str = "drbridge.io/cluster-identity";
/// Identity records are named this plus the cluster name.
pub const IDENTITY_SECRET_PREFIX: &str = "drbridge-identity-";
const KEY_RECORD: &str = "identity.json";
/// Renewals keep at most this many certificates per cluster (oldest dropped first, never
/// the presented or the new one), so a misbehaving agent cannot grow its record unbounded.
pub const MAX_CERTS: usize = 4;

/// Name of the identity record of `cluster`.
pub fn record_name(cluster: &str) -> String {
    format!("{IDENTITY_SECRET_PREFIX}{cluster}")
}

/// One certificate the hub issued and accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedCert {
    /// Lowercase hex, as [`drbridge_tls::CertInfo::serial`].
    pub serial: String,
    #[serde(with = "rfc3339")]
    pub not_after: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub issued: DateTime<Utc>,
}

/// RFC 3339 timestamps (chrono is built without its serde feature here).
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&drbridge_model::status::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The accepted certificates of one cluster, or its tombstone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRecord {
    /// Bumped by every removal. A join token carries the epoch of its making, and is refused
    /// once the cluster has been removed since, even if it was already being redeemed.
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub removed: bool,
    #[serde(default)]
    pub certificates: Vec<AcceptedCert>,
    /// Id of the join token that made this record: that token is refused from then on, even
    /// if deleting it after the join failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<String>,
}

/// Why a certificate is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the hub has not finished reading its identity records")]
    NotReady,
    #[error("cluster {0:?} was removed from this hub; join it again with a new token")]
    Removed(String),
    #[error(
        "certificate {serial} of cluster {cluster:?} is revoked or superseded; join again with a new token"
    )]
    NotAccepted { cluster: String, serial: String },
    #[error(
        "cluster {0:?} has not joined this hub (it requires `drbridge cluster join`); certificates issued otherwise are refused"
    )]
    NotJoined(String),
    #[error("invalid or already used join token")]
    TokenUsed,
}

impl IdentityRecord {
    /// The record after a join with a token made at `epoch`: only `cert`.
    pub fn joined(epoch: u64, cert: AcceptedCert) -> Self {
        Self {
            epoch,
            removed: false,
            certificates: vec![cert],
            join_token: None,
        }
    }

    /// A removed cluster's tombstone, one epoch after `old`.
    pub fn removed_after(old: Option<&IdentityRecord>) -> Self {
        Self {
            epoch: old.map_or(0, |r| r.epoch) + 1,
            ..Self::tombstone()
        }
    }

    /// A record that refuses everything.
    pub fn tombstone() -> Self {
        Self {
            epoch: 0,
            removed: true,
            certificates: Vec::new(),
            join_token: None,
        }
    }

    /// What a record becomes when its Secret disappears: refused, one epoch later (a
    /// tombstone stays as it is).
    pub fn deleted(self) -> Self {
        if self.removed {
            self
        } else {
            Self::removed_after(Some(&self))
        }
    }

    /// Adds `new` after a renewal presented with `presented`, pruning expired entries.
    pub fn renewed(&mut self, presented: AcceptedCert, new: AcceptedCert, now: DateTime<Utc>) {
        self.removed = false;
        self.certificates.retain(|c| c.not_after > now);
        if !self
            .certificates
            .iter()
            .any(|c| c.serial == presented.serial)
        {
            self.certificates.push(presented.clone());
        }
        self.certificates.retain(|c| c.serial != new.serial);
        self.certificates.sort_by_key(|c| c.issued);
        while self.certificates.len() >= MAX_CERTS {
            let Some(i) = self
                .certificates
                .iter()
                .position(|c| c.serial != presented.serial)
            else {
                break;
            };
            self.certificates.remove(i);
        }
        self.certificates.push(new);
    }

    /// Whether `serial` of `cluster` is accepted at `now`.
    pub fn accepts(&self, cluster: &str, serial: &str, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.removed {
            return Err(Refusal::Removed(cluster.to_owned()));
        }
        if self
            .certificates
            .iter()
            .any(|c| c.serial == serial && c.not_after > now)
        {
            Ok(())
        } else {
            Err(Refusal::NotAccepted {
                cluster: cluster.to_owned(),
                serial: serial.to_owned(),
            })
        }
    }

    /// The Secret holding this record.
    pub fn to_secret(&self, cluster: &str, namespace: &str) -> Secret {
        let json = serde_json::to_vec_pretty(self).expect("a record always serialises");
        Secret {
            metadata: ObjectMeta {
                name: Some(record_name(cluster)),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([
                    (CLUSTER_LABEL.to_owned(), cluster.to_owned()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "drbridge".to_owned(),
                    ),
                ])),
                ..Default::default()
            },
            type_: Some(IDENTITY_SECRET_TYPE.to_owned()),
            data: Some(BTreeMap::from([(KEY_RECORD.to_owned(), ByteString(json))])),
            ..Default::default()
        }
    }

    /// The cluster and record of an identity Secret.
    pub fn from_secret(secret: &Secret) -> Result<(String, Self), String> {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let cluster = name
            .strip_prefix(IDENTITY_SECRET_PREFIX)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("{name}: not named {IDENTITY_SECRET_PREFIX}<cluster>"))?;
        if secret.type_.as_deref() != Some(IDENTITY_SECRET_TYPE) {
            return Err(format!("{name}: type is not {IDENTITY_SECRET_TYPE}"));
        }
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_RECORD))
            .ok_or_else(|| format!("{name}: no {KEY_RECORD}"))?;
        let record = serde_json::from_slice(&bytes.0).map_err(|e| format!("{name}: {e}"))?;
        Ok((cluster.to_owned(), record))
    }
}

/// The identity records of every cluster, as last seen by the watch.
#[derive(Clone, Debug)]
pub struct Identities {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    records: RwLock<HashMap<String, IdentityRecord>>,
    synced: watch::Sender<bool>,
    version: watch::Sender<u64>,
    require_join: bool,
}

impl Identities {
    /// An empty registry that refuses everything until [`reset`](Self::reset). With
    /// `require_join`, a cluster without a record is refused.
    pub fn new(require_join: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                records: RwLock::new(HashMap::new()),
                synced: watch::channel(false).0,
                version: watch::channel(0).0,
                require_join,
            }),
        }
    }

    /// Whether `serial` of `cluster` may connect now.
    pub fn check(&self, cluster: &str, serial: &str) -> Result<(), Refusal> {
        if !*self.inner.synced.borrow() {
            return Err(Refusal::NotReady);
        }
        match self.inner.records.read().get(cluster) {
            Some(record) => record.accepts(cluster, serial, Utc::now()),
            None if self.inner.require_join => Err(Refusal::NotJoined(cluster.to_owned())),
            None => Ok(()),
        }
    }

    /// The current record of `cluster`.
    pub fn get(&self, cluster: &str) -> Option<IdentityRecord> {
        self.inner.records.read().get(cluster).cloned()
    }

    /// Bumped on every change: holders of an open stream re-check.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// True once the records have been listed.
    pub fn synced(&self) -> watch::Receiver<bool> {
        self.inner.synced.subscribe()
    }

    /// Replaces every record (after a list). A record known before and missing from the list
    /// was deleted meanwhile: it stays, as a tombstone ([`IdentityRecord::deleted`]). Returns
    /// those tombstones, for writing back.
    pub fn reset(
        &self,
        mut records: HashMap<String, IdentityRecord>,
    ) -> Vec<(String, IdentityRecord)> {
        let mut gone = Vec::new();
        {
            let mut current = self.inner.records.write();
            for (cluster, old) in current.drain() {
                if let std::collections::hash_map::Entry::Vacant(slot) = records.entry(cluster) {
                    let tomb = old.deleted();
                    gone.push((slot.key().clone(), tomb.clone()));
                    slot.insert(tomb);
                }
            }
            *current = records;
        }
        self.inner.synced.send_replace(true);
        self.bump();
        gone
    }

    /// Sets the record of `cluster`; `None`: its Secret was deleted, and a record that existed
    /// becomes a tombstone ([`IdentityRecord::deleted`]), returned for writing back.
    pub fn set(&self, cluster: &str, record: Option<IdentityRecord>) -> Option<IdentityRecord> {
        let tomb = {
            let mut records = self.inner.records.write();
            match record {
                Some(r) => {
                    records.insert(cluster.to_owned(), r);
                    None
                }
                None => records.get_mut(cluster).map(|old| {
                    *old = old.clone().deleted();
                    old.clone()
                }),
            }
        };
        self.bump();
        tomb
    }

    fn bump(&self) {
        self.inner.version.send_modify(|v| *v += 1);
    }
}

/// A record that cannot be read fails closed: the cluster is treated as removed.
fn decode(secret: &Secret) -> Option<(String, IdentityRecord)> {
    match IdentityRecord::from_secret(secret) {
        Ok(pair) => Some(pair),
        Err(e) => {
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            let cluster = name.strip_prefix(IDENTITY_SECRET_PREFIX)?;
            error!(error = %e, %cluster, "unreadable identity record; refusing the cluster until it is fixed");
            Some((cluster.to_owned(), IdentityRecord::tombstone()))
        }
    }
}

/// Writes the tombstone of a deleted record back, so it outlives this process. A record created
/// meanwhile (a new join) wins.
async fn write_back(api: &Api<Secret>, namespace: &str, cluster: &str, tomb: &IdentityRecord) {
    match api
        .create(&PostParams::default(), &tomb.to_secret(cluster, namespace))
        .await
    {
        Ok(_) => {
            info!(%cluster, epoch = tomb.epoch, "tombstone of the deleted identity record written")
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            warn!(%cluster, error = %e, "cannot write the tombstone of a deleted identity record; it holds only while this hub runs")
        }
    }
}

/// Watches the identity Secrets of `namespace` into `identities` until the task is aborted.
/// `removed` is told of each cluster whose record becomes a removal while the hub watches.
pub async fn watch_records(
    client: kube::Client,
    namespace: String,
    identities: Identities,
    removed: impl Fn(&str),
) {
    let was_accepted = |cluster: &str| identities.get(cluster).is_some_and(|r| !r.removed);
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let cfg = watcher::Config::default().fields(&format!("type={IDENTITY_SECRET_TYPE}"));
    let events = watcher::watcher(api.clone(), cfg).default_backoff();
    futures::pin_mut!(events);
    let mut buffer: Option<HashMap<String, IdentityRecord>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(Event::Init) => buffer = Some(HashMap::new()),
            Ok(Event::InitApply(s)) => {
                if let Some((cluster, record)) = decode(&s) {
                    buffer
                        .get_or_insert_with(HashMap::new)
                        .insert(cluster, record);
                }
            }
            Ok(Event::InitDone) => {
                let records = buffer.take().unwrap_or_default();
                info!(%namespace, count = records.len(), "identity records listed");
                for (cluster, tomb) in identities.reset(records) {
                    warn!(%cluster, "identity record deleted while the hub was not watching; refusing the cluster until it joins again");
                    write_back(&api, &namespace, &cluster, &tomb).await;
                }
            }
            Ok(Event::Apply(s)) => {
                if let Some((cluster, record)) = decode(&s) {
                    info!(%cluster, removed = record.removed, certificates = record.certificates.len(), "identity record changed");
                    let newly_removed = record.removed && was_accepted(&cluster);
                    identities.set(&cluster, Some(record));
                    if newly_removed {
                        removed(&cluster);
                    }
                }
            }
            Ok(Event::Delete(s)) => {
                if let Some(cluster) = s
                    .metadata
                    .name
                    .as_deref()
                    .and_then(|n| n.strip_prefix(IDENTITY_SECRET_PREFIX))
                {
                    let newly_removed = was_accepted(cluster);
                    let Some(tomb) = identities.set(cluster, None) else {
                        continue;
                    };
                    if newly_removed {
                        removed(cluster);
                    }
                    warn!(%cluster, "identity record deleted; refusing the cluster until it joins again");
                    write_back(&api, &namespace, cluster, &tomb).await;
                }
            }
            Err(e) => warn!(error = %e, "identity record watch failed; retrying"),
        }
    }
}

/// Reads the record of `cluster` (an unreadable one as a tombstone).
pub async fn read_record(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
) -> Result<Option<IdentityRecord>, RecordError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = record_name(cluster);
    let secret = api
        .get_opt(&name)
        .await
        .map_err(|source| RecordError::Kube { name, source })?;
    Ok(secret.as_ref().and_then(decode).map(|(_, r)| r))
}

/// Errors of [`update_record`].
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("writing identity record {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing identity record {name}: still conflicting after {attempts} attempts")]
    Conflict { name: String, attempts: usize },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Reads the record of `cluster`, lets `change` compute the new one (or refuse) and writes
/// it, guarded by the resourceVersion read (retried on conflict), so concurrent joins,
/// renewals and removals never lose each other's writes, and a renewal decides on the record
/// it replaces rather than on the watch's possibly older copy.
pub async fn update_record<F>(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
    mut change: F,
) -> Result<IdentityRecord, RecordError>
where
    F: FnMut(Option<IdentityRecord>) -> Result<IdentityRecord, Refusal>,
{
    const ATTEMPTS: usize = 8;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = record_name(cluster);
    let kube_err = |source| RecordError::Kube {
        name: name.clone(),
        source,
    };
    for _ in 0..ATTEMPTS {
        let current = api.get_opt(&name).await.map_err(kube_err)?;
        let old = current
            .as_ref()
            .map(|s| match IdentityRecord::from_secret(s) {
                Ok((_, r)) => r,
                // Unreadable: rebuild from nothing rather than trust any part of it.
                Err(e) => {
                    warn!(error = %e, "replacing an unreadable identity record");
                    IdentityRecord::tombstone()
                }
            });
        let new = change(old)?;
        let mut secret = new.to_secret(cluster, namespace);
        let result = match current {
            Some(cur) => {
                secret.metadata.resource_version = cur.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &secret).await
            }
            None => api.create(&PostParams::default(), &secret).await,
        };
        match result {
            Ok(_) => return Ok(new),
            // 409: someone wrote in between (or created it first); read again.
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(kube_err(e)),
        }
    }
    Err(RecordError::Conflict {
        name,
        attempts: ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::hours(h)
    }

    fn cert(serial: &str, issued: i64, hours: i64) -> AcceptedCert {
        AcceptedCert {
            serial: serial.into(),
            not_after: t(issued + hours),
            issued: t(issued),
        }
    }

    fn serials(r: &IdentityRecord) -> Vec<&str> {
        r.certificates.iter().map(|c| c.serial.as_str()).collect()
    }

    #[test]
    fn join_accepts_only_the_new_certificate() {
        let r = IdentityRecord::joined(0, cert("aa", 0, 24));
        r.accepts("dr1", "aa", t(1)).unwrap();
        assert!(matches!(
            r.accepts("dr1", "bb", t(1)),
            Err(Refusal::NotAccepted { .. })
        ));
        // Expired entries are not accepted even before they are pruned.
        assert!(r.accepts("dr1", "aa", t(24)).is_err());
    }

    #[test]
    fn renewal_keeps_the_presented_certificate_and_prunes_expired_ones() {
        let mut r = IdentityRecord::joined(0, cert("a", 0, 3));
        r.renewed(cert("a", 0, 3), cert("b", 2, 3), t(2));
        assert_eq!(serials(&r), ["a", "b"]);
        r.accepts("dr1", "a", t(2)).unwrap();
        r.accepts("dr1", "b", t(2)).unwrap();
        // At t=4, a has expired and is pruned; b is presented.
        r.renewed(cert("b", 2, 3), cert("c", 4, 3), t(4));
        assert_eq!(serials(&r), ["b", "c"]);
    }

    #[test]
    fn renewal_bounds_the_record() {
        let mut r = IdentityRecord::joined(0, cert("p", 0, 100));
        for (i, s) in ["n1", "n2", "n3", "n4", "n5"].iter().enumerate() {
            r.renewed(cert("p", 0, 100), cert(s, 1 + i as i64, 100), t(10));
        }
        assert_eq!(r.certificates.len(), MAX_CERTS);
        assert!(serials(&r).contains(&"p"));
        assert_eq!(serials(&r).last(), Some(&"n5"));
    }

    #[test]
    fn renewal_with_a_certificate_issued_elsewhere_starts_a_record() {
        let mut r = IdentityRecord::default();
        r.renewed(cert("ext", 0, 10), cert("new", 1, 10), t(1));
        assert_eq!(serials(&r), ["ext", "new"]);
    }

    #[test]
    fn removal_bumps_the_epoch() {
        let r = IdentityRecord::removed_after(None);
        assert_eq!((r.epoch, r.removed), (1, true));
        let j = IdentityRecord::joined(r.epoch, cert("aa", 0, 1));
        assert_eq!(IdentityRecord::removed_after(Some(&j)).epoch, 2);
    }

    #[test]
    fn tombstone_refuses_everything() {
        let r = IdentityRecord::tombstone();
        assert_eq!(
            r.accepts("dr1", "aa", t(0)),
            Err(Refusal::Removed("dr1".into()))
        );
    }

    #[test]
    fn record_round_trips_through_its_secret() {
        let mut r = IdentityRecord::joined(0, cert("aa", 0, 24));
        r.renewed(cert("aa", 0, 24), cert("bb", 1, 24), t(1));
        let s = r.to_secret("dr1", "drbridge-system");
        assert_eq!(s.metadata.name.as_deref(), Some("drbridge-identity-dr1"));
        assert_eq!(
            IdentityRecord::from_secret(&s).unwrap(),
            ("dr1".into(), r.clone())
        );
        let mut wrong = s.clone();
        wrong.type_ = Some("Opaque".into());
        assert!(IdentityRecord::from_secret(&wrong).is_err());
        // An unreadable record fails closed.
        let mut broken = s;
        broken
            .data
            .as_mut()
            .unwrap()
            .insert(KEY_RECORD.into(), ByteString(b"{".to_vec()));
        assert_eq!(
            decode(&broken),
            Some(("dr1".into(), IdentityRecord::tombstone()))
        );
    }

    /// Issue 17 item 11: a record that existed and was deleted (by hand, by a tool, while
    /// the watch was down) must not turn into "no record", which with `require_join=false`
    /// would accept again every certificate the record had superseded or revoked.
    #[test]
    fn a_deleted_record_fails_closed() {
        let far = Utc::now() + chrono::Duration::hours(1);
        let rec = |serial: &str| {
            IdentityRecord::joined(
                3,
                AcceptedCert {
                    serial: serial.into(),
                    not_after: far,
                    issued: Utc::now(),
                },
            )
        };
        let ids = Identities::new(false);
        ids.reset(HashMap::from([("dr1".to_string(), rec("new"))]));
        assert!(ids.check("dr1", "superseded").is_err());
        ids.check("dr1", "new").unwrap();
        // The watch sees the Secret deleted.
        ids.set("dr1", None);
        assert_eq!(
            ids.check("dr1", "superseded"),
            Err(Refusal::Removed("dr1".into()))
        );
        assert!(ids.check("dr1", "new").is_err());
        // A later epoch than the deleted record's, so tokens made before stay refused.
        assert!(ids.get("dr1").is_some_and(|r| r.removed && r.epoch > 3));

        // Deleted while the watch was away: the relist no longer has it.
        let ids = Identities::new(false);
        ids.reset(HashMap::from([("dr1".to_string(), rec("new"))]));
        ids.reset(HashMap::new());
        assert_eq!(
            ids.check("dr1", "superseded"),
            Err(Refusal::Removed("dr1".into()))
        );
        // A cluster that never had a record is still accepted (certificates from elsewhere).
        ids.check("dr2", "any").unwrap();
        // A new record (a re-join) replaces the tombstone.
        ids.set("dr1", Some(rec("rejoined")));
        ids.check("dr1", "rejoined").unwrap();
    }

    #[test]
    fn registry_refuses_until_listed_and_follows_changes() {
        let ids = Identities::new(false);
        assert_eq!(ids.check("dr1", "aa"), Err(Refusal::NotReady));
        let mut changes = ids.changes();
        ids.reset(HashMap::new());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // No record: certificates issued outside drbridge are accepted.
        ids.check("dr1", "aa").unwrap();
        let far = Utc::now() + chrono::Duration::hours(1);
        let rec = IdentityRecord::joined(
            0,
            AcceptedCert {
                serial: "bb".into(),
                not_after: far,
                issued: Utc::now(),
            },
        );
        ids.set("dr1", Some(rec));
        assert!(changes.has_changed().unwrap());
        assert!(ids.check("dr1", "aa").is_err());
        ids.check("dr1", "bb").unwrap();
        ids.set("dr1", Some(IdentityRecord::tombstone()));
        assert_eq!(ids.check("dr1", "bb"), Err(Refusal::Removed("dr1".into())));

        let strict = Identities::new(true);
        strict.reset(HashMap::new());
        assert_eq!(
            strict.check("dr1", "aa"),
            Err(Refusal::NotJoined("dr1".into()))
        );
    }
}
