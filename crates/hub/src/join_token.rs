//! Join tokens: what `drbridge cluster join NAME` prints and a new agent presents once.
//!
//! A token is `<id>.<secret>`: `id` is 16 lowercase hex digits and names the Secret
//! `drbridge-join-<id>` in the hub's namespace; `secret` is 64 lowercase hex digits (256 random
//! bits). The Secret holds only the SHA-256 of the whole token, the cluster name and the expiry,
//! so reading the hub's Secrets does not reveal a usable token. The hub compares digests in
//! constant time and consumes the Secret with a delete guarded by its uid and resourceVersion,
//! so of two joins racing with one token at most one succeeds.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drbridge_model::status::rfc3339;
use drbridge_tls::ClusterName;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `type` of join-token Secrets.
pub const TOKEN_SECRET_TYPE: &str = "drbridge.io/join-token";
/// Join-token Secrets are named this plus the token's id.
pub const TOKEN_SECRET_PREFIX: &str = "drbridge-join-";
/// Label naming the cluster a drbridge Secret belongs to.
pub const CLUSTER_LABEL: &str = "drbridge.io/cluster";
/// Default lifetime of a join token.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

const ID_LEN: usize = 16;
const SECRET_LEN: usize = 64;
const KEY_CLUSTER: &str = "cluster";
const KEY_DIGEST: &str = "token-sha256";
const KEY_EXPIRATION: &str = "expiration";
const KEY_EPOCH: &str = "identity-epoch";

/// Why a token or its record is refused. The texts are safe to return to the caller: none
/// says whether a token id exists, only whether the presented token works.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed join token: expected <16 hex digits>.<64 hex digits>")]
    Malformed,
    #[error("invalid or already used join token")]
    Invalid,
    #[error("join token expired at {0}")]
    Expired(String),
    #[error("join token record {name}: {reason}")]
    BadRecord { name: String, reason: String },
}

/// A parsed join token. `Debug` hides the secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    id: String,
    secret: String,
}

impl JoinToken {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> Self {
        let id: [u8; ID_LEN / 2] = rand::random();
        let secret: [u8; SECRET_LEN / 2] = rand::random();
        Self {
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    /// Parses `<id>.<secret>`, surrounding whitespace ignored (tokens get pasted).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let (id, secret) = s.trim().split_once('.').ok_or(TokenError::Malformed)?;
        let lower_hex = |p: &str, len: usize| {
            p.len() == len
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(id, ID_LEN) || !lower_hex(secret, SECRET_LEN) {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The public part: names the Secret, fine to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Name of the Secret recording this token.
    pub fn secret_name(&self) -> String {
        format!("{TOKEN_SECRET_PREFIX}{}", self.id)
    }

    /// The whole token, to hand to the operator once. Deliberately not `Display`.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// SHA-256 of the whole token.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.expose().as_bytes()).into()
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the hub keeps about a token: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub cluster: ClusterName,
    pub digest: [u8; 32],
    pub expires: DateTime<Utc>,
    /// The epoch of the cluster's identity record when the token was made
    /// ([`crate::identity::IdentityRecord::epoch`]).
    pub epoch: u64,
}

impl TokenRecord {
    pub fn new(
        token: &JoinToken,
        cluster: ClusterName,
        expires: DateTime<Utc>,
        epoch: u64,
    ) -> Self {
        Self {
            cluster,
            digest: token.digest(),
            expires,
            epoch,
        }
    }

    /// Checks `token` against this record at `now`: digest first (constant time), then
    /// expiry, so an expired record says nothing to someone without the token.
    pub fn verify(&self, token: &JoinToken, now: DateTime<Utc>) -> Result<(), TokenError> {
        if !bool::from(self.digest.ct_eq(&token.digest())) {
            return Err(TokenError::Invalid);
        }
        if now >= self.expires {
            return Err(TokenError::Expired(rfc3339(self.expires)));
        }
        Ok(())
    }

    /// The Secret recording `token` in `namespace`.
    pub fn to_secret(&self, token: &JoinToken, namespace: &str) -> Secret {
        let data = BTreeMap::from([
            (
                KEY_CLUSTER.to_owned(),
                ByteString(self.cluster.as_str().as_bytes().to_vec()),
            ),
            (
                KEY_DIGEST.to_owned(),
                ByteString(hex::encode(self.digest).into_bytes()),
            ),
            (
                KEY_EXPIRATION.to_owned(),
                ByteString(rfc3339(self.expires).into_bytes()),
            ),
            (
                KEY_EPOCH.to_owned(),
                ByteString(self.epoch.to_string().into_bytes()),
            ),
        ]);
        Secret {
            metadata: ObjectMeta {
                name: Some(token.secret_name()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([
                    (CLUSTER_LABEL.to_owned(), self.cluster.to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "drbridge".to_owned(),
                    ),
                ])),
                ..Default::default()
            },
            type_: Some(TOKEN_SECRET_TYPE.to_owned()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// Reads a record back; refuses Secrets of another type, so a Secret that merely has the
    /// right name cannot act as a token.
    pub fn from_secret(secret: &Secret) -> Result<Self, TokenError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let bad = |reason: String| TokenError::BadRecord {
            name: name.clone(),
            reason,
        };
        if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
            return Err(bad(format!("type is not {TOKEN_SECRET_TYPE}")));
        }
        let field = |key: &str| -> Result<String, TokenError> {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .ok_or_else(|| bad(format!("no {key}")))?;
            String::from_utf8(bytes.0.clone()).map_err(|_| bad(format!("{key} is not UTF-8")))
        };
        let cluster = ClusterName::new(field(KEY_CLUSTER)?).map_err(|e| bad(e.to_string()))?;
        let digest: [u8; 32] = hex::decode(field(KEY_DIGEST)?.trim())
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or_else(|| bad(format!("{KEY_DIGEST} is not 32 hex-encoded bytes")))?;
        let expires = DateTime::parse_from_rfc3339(field(KEY_EXPIRATION)?.trim())
            .map_err(|e| bad(format!("{KEY_EXPIRATION}: {e}")))?
            .with_timezone(&Utc);
        let epoch = field(KEY_EPOCH)?
            .trim()
            .parse()
            .map_err(|e| bad(format!("{KEY_EPOCH}: {e}")))?;
        Ok(Self {
            cluster,
            digest,
            expires,
            epoch,
        })
    }
}

/// Parses a duration such as `90s`, `15m`, `1h`, `7d` or plain seconds (`3600`); compound
/// values (`1h30m`) too.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {c:?}")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: a number must precede {c:?}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: a unit must follow {digits}"
        ));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn generated_tokens_parse_back_and_differ() {
        let a = JoinToken::generate();
        let b = JoinToken::generate();
        assert_ne!(a, b);
        assert_ne!(a.id(), b.id());
        let text = a.expose();
        assert_eq!(text.len(), ID_LEN + 1 + SECRET_LEN);
        assert_eq!(JoinToken::parse(&text).unwrap(), a);
        assert_eq!(JoinToken::parse(&format!("  {text}\n")).unwrap(), a);
        assert_eq!(a.secret_name(), format!("drbridge-join-{}", a.id()));
        // Secret names are DNS subdomains.
        assert!(
            a.secret_name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = JoinToken::generate().expose();
        let (id, secret) = good.split_once('.').unwrap();
        for bad in [
            String::new(),
            ".".into(),
            id.into(),
            format!("{id}{secret}"),
            format!("{id}.{}", &secret[1..]),
            format!("{}.{secret}", &id[1..]),
            format!("{id}.{secret}0"),
            format!("{}.{secret}", id.to_uppercase()),
            format!("{id}.{}g", &secret[1..]),
            format!("{id}.{secret}.x"),
            format!("{id}/{secret}"),
        ] {
            assert_eq!(
                JoinToken::parse(&bad),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = JoinToken::generate();
        let secret = t.expose().split_once('.').unwrap().1.to_owned();
        let dbg = format!("{t:?}");
        assert!(dbg.contains(t.id()));
        assert!(!dbg.contains(&secret), "{dbg}");
    }

    #[test]
    fn record_verifies_the_token_then_the_expiry() {
        let t = JoinToken::generate();
        let rec = TokenRecord::new(
            &t,
            "dr1".parse().unwrap(),
            now() + chrono::Duration::hours(1),
            0,
        );
        rec.verify(&t, now()).unwrap();
        // Same id, other secret: refused without a word about expiry.
        let forged = JoinToken::parse(&format!("{}.{}", t.id(), "0".repeat(64))).unwrap();
        assert_eq!(rec.verify(&forged, now()), Err(TokenError::Invalid));
        let later = now() + chrono::Duration::hours(2);
        assert_eq!(
            rec.verify(&t, later),
            Err(TokenError::Expired("2030-01-02T04:04:05Z".into()))
        );
        assert_eq!(rec.verify(&forged, later), Err(TokenError::Invalid));
        // Expiry is exclusive.
        assert!(rec.verify(&t, rec.expires).is_err());
    }

    #[test]
    fn record_round_trips_through_a_secret_without_the_token() {
        let t = JoinToken::generate();
        let rec = TokenRecord::new(&t, "dr1".parse().unwrap(), now(), 3);
        let secret = rec.to_secret(&t, "drbridge-system");
        assert_eq!(secret.type_.as_deref(), Some(TOKEN_SECRET_TYPE));
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some(t.secret_name().as_str())
        );
        assert_eq!(
            secret.metadata.labels.as_ref().unwrap()[CLUSTER_LABEL],
            "dr1"
        );
        let stored = serde_json::to_string(&secret).unwrap();
        let secret_part = t.expose().split_once('.').unwrap().1.to_owned();
        assert!(!stored.contains(&secret_part));
        assert_eq!(TokenRecord::from_secret(&secret).unwrap(), rec);

        let mut other = secret.clone();
        other.type_ = Some("Opaque".into());
        assert!(matches!(
            TokenRecord::from_secret(&other),
            Err(TokenError::BadRecord { .. })
        ));
        let mut broken = secret;
        broken
            .data
            .as_mut()
            .unwrap()
            .insert(KEY_DIGEST.into(), ByteString(b"abcd".to_vec()));
        assert!(TokenRecord::from_secret(&broken).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
        for bad in ["", "h", "1x", "1h3", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
