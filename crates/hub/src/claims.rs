//! The claims an agent sends in `Hello`, checked before they reach ManagedCluster status.
//!
//! Ramen trusts two claims: `id.k8s.io` (copied into DRClusterConfig `spec.clusterID`, and used
//! to tell clusters apart in DRPolicy) and `name`. An agent's certificate names its cluster;
//! claims must never say otherwise:
//! - `name` is always the certificate's cluster;
//! - `id.k8s.io` cannot change while the ManagedCluster keeps one in its status (re-creating the
//!   ManagedCluster clears it), and cannot copy the id another cluster already has;
//! - names must be DNS subdomains (what a ClusterClaim object can be called), values 1 to 1024
//!   characters (ClusterClaim's `spec.value` limit), and there are at most [`MAX_CLAIMS`].
//!
//! Whatever is refused is left out (or kept as stored) and logged; the stream carries on.

use drbridge_proto::v1 as pb;

/// The cluster id claim (kube-system's uid).
pub const CLAIM_ID: &str = "id.k8s.io";
/// The cluster name claim.
pub const CLAIM_NAME: &str = "name";
/// At most this many claims per cluster (OCM's registration agent keeps 20 custom claims
/// besides its reserved ones).
pub const MAX_CLAIMS: usize = 32;
/// ClusterClaim `spec.value` maxLength.
pub const MAX_VALUE_CHARS: usize = 1024;
/// `status.version.kubernetes` is free text; a real version is far shorter.
pub const MAX_VERSION_CHARS: usize = 64;

/// A DNS subdomain (RFC 1123), as Kubernetes object names are.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// What the hub already knows, to check a Hello's claims against.
#[derive(Clone, Debug, Default)]
pub struct Known<'a> {
    /// `id.k8s.io` as stored on this cluster's ManagedCluster, if any.
    pub stored_id: Option<&'a str>,
    /// `id.k8s.io` of every other registered cluster.
    pub other_ids: Vec<&'a str>,
}

/// `info` with every claim the certificate's `cluster` may not make removed or corrected,
/// and a sentence for each change.
pub fn validate(
    cluster: &str,
    info: pb::ClusterInfo,
    known: &Known<'_>,
) -> (pb::ClusterInfo, Vec<String>) {
    let mut problems = Vec::new();
    let mut claims: Vec<(String, String)> = info.claims.into_iter().collect();
    claims.sort();
    let mut kept = std::collections::HashMap::new();
    for (name, value) in claims {
        if !is_dns_subdomain(&name) {
            problems.push(format!(
                "claim {:?} dropped: not a DNS subdomain",
                truncate(&name)
            ));
            continue;
        }
        if value.is_empty() || value.chars().count() > MAX_VALUE_CHARS {
            problems.push(format!(
                "claim {name} dropped: its value must have 1 to {MAX_VALUE_CHARS} characters"
            ));
            continue;
        }
        let value = match name.as_str() {
            CLAIM_NAME if value != cluster => {
                problems.push(format!(
                    "claim name {:?} replaced by the certificate's cluster {cluster:?}",
                    truncate(&value)
                ));
                cluster.to_string()
            }
            CLAIM_ID => match known.stored_id {
                Some(stored) if !stored.is_empty() && stored != value => {
                    problems.push(format!(
                        "claim {CLAIM_ID} {:?} refused: the ManagedCluster already has {stored:?}",
                        truncate(&value)
                    ));
                    stored.to_string()
                }
                _ if known.other_ids.contains(&value.as_str()) => {
                    problems.push(format!(
                        "claim {CLAIM_ID} {:?} dropped: another cluster already has it",
                        truncate(&value)
                    ));
                    continue;
                }
                _ => value,
            },
            _ => value,
        };
        kept.insert(name, value);
    }
    if kept.len() > MAX_CLAIMS {
        // The reserved claims stay; of the rest, the first by name.
        let mut others: Vec<String> = kept
            .keys()
            .filter(|n| *n != CLAIM_ID && *n != CLAIM_NAME)
            .cloned()
            .collect();
        others.sort();
        let reserved = kept.len() - others.len();
        let dropped = others.split_off(MAX_CLAIMS.saturating_sub(reserved));
        problems.push(format!(
            "{} claims dropped: at most {MAX_CLAIMS} are kept",
            dropped.len()
        ));
        for name in dropped {
            kept.remove(&name);
        }
    }
    let mut kubernetes_version = info.kubernetes_version;
    if kubernetes_version.chars().count() > MAX_VERSION_CHARS {
        problems.push("kubernetes version dropped: too long".to_string());
        kubernetes_version.clear();
    }
    (
        pb::ClusterInfo {
            claims: kept,
            kubernetes_version,
        },
        problems,
    )
}

/// For messages: at most 64 characters of what an agent sent.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Text an agent sent, fit for a log line: at most 64 characters, control characters escaped.
pub fn printable(s: &str) -> String {
    truncate(s).escape_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(claims: &[(&str, &str)]) -> pb::ClusterInfo {
        pb::ClusterInfo {
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kubernetes_version: "v1.34.1".into(),
        }
    }

    #[test]
    fn honest_claims_pass_unchanged() {
        let sent = info(&[(CLAIM_ID, "uid-1"), (CLAIM_NAME, "dr1")]);
        let (out, problems) = validate("dr1", sent.clone(), &Known::default());
        assert_eq!(out, sent);
        assert!(problems.is_empty(), "{problems:?}");
        // The stored id, sent again, is fine too.
        let known = Known {
            stored_id: Some("uid-1"),
            other_ids: vec!["uid-2"],
        };
        assert_eq!(validate("dr1", sent.clone(), &known).0, sent);
    }

    #[test]
    fn name_and_id_cannot_be_spoofed() {
        let known = Known {
            stored_id: None,
            other_ids: vec!["uid-2"],
        };
        let (out, problems) = validate(
            "dr1",
            info(&[(CLAIM_ID, "uid-2"), (CLAIM_NAME, "dr2")]),
            &known,
        );
        assert_eq!(out.claims.get(CLAIM_NAME).map(String::as_str), Some("dr1"));
        assert!(!out.claims.contains_key(CLAIM_ID));
        assert_eq!(problems.len(), 2, "{problems:?}");
        let known = Known {
            stored_id: Some("uid-1"),
            other_ids: vec![],
        };
        let (out, _) = validate("dr1", info(&[(CLAIM_ID, "uid-9")]), &known);
        assert_eq!(out.claims[CLAIM_ID], "uid-1");
    }

    #[test]
    fn malformed_and_excess_claims_are_dropped() {
        let long = "v".repeat(MAX_VALUE_CHARS + 1);
        let (out, problems) = validate(
            "dr1",
            info(&[
                ("Bad Name", "x"),
                ("ok.example.com", ""),
                ("big.example.com", &long),
            ]),
            &Known::default(),
        );
        assert!(out.claims.is_empty(), "{:?}", out.claims);
        assert_eq!(problems.len(), 3);
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("c{i:03}.example.com"), "v".to_string()))
            .chain([(CLAIM_ID.to_string(), "uid-1".to_string())])
            .collect();
        let sent = pb::ClusterInfo {
            claims: many.into_iter().collect(),
            kubernetes_version: "x".repeat(1000),
        };
        let (out, _) = validate("dr1", sent, &Known::default());
        assert_eq!(out.claims.len(), MAX_CLAIMS);
        assert_eq!(out.claims[CLAIM_ID], "uid-1");
        assert!(out.claims.contains_key("c000.example.com"));
        assert!(out.kubernetes_version.is_empty());
        for s in ["a", "a.b-c", "id.k8s.io"] {
            assert!(is_dns_subdomain(s), "{s}");
        }
        for s in ["", "A", "-a", "a.", "a..b", "a_b"] {
            assert!(!is_dns_subdomain(s), "{s}");
        }
    }
}
