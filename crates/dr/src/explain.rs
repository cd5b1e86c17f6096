//! Conditions Ramen writes, turned into sentences a user can act on. Each sentence says what
//! is wrong in plain words, what to do when drbridge knows, and then quotes Ramen.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;

use crate::consts::{condition as ct, config, progression, reason as r, vrg_state};
use crate::types::{DRCluster, DRPlacementControl, DRPolicy, VolumeReplicationGroup};

/// A problem found in an object's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// `DRPolicy dr-policy`, `DRPlacementControl ramen-ops/app`, `VRG on dr1`.
    pub object: String,
    /// The condition type it comes from (empty for problems not from a condition).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// Ramen's reason, for scripts.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The sentence.
    pub text: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.text)
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `True`, `False`, `Unknown`, or `-` when absent.
pub fn status_of(conditions: &[Condition], type_: &str) -> String {
    find(conditions, type_).map_or_else(|| "-".into(), |c| c.status.clone())
}

fn quote(c: &Condition) -> String {
    let msg = c.message.trim().trim_end_matches('.');
    if msg.is_empty() {
        format!("(Ramen: {})", c.reason)
    } else {
        format!("(Ramen: {}: {msg})", c.reason)
    }
}

fn older(c: &Condition, generation: Option<i64>) -> &'static str {
    match (c.observed_generation, generation) {
        (Some(o), Some(g)) if o < g => " This was reported for an older version of the object.",
        _ => "",
    }
}

fn problem(object: &str, c: Option<&Condition>, text: String) -> Problem {
    Problem {
        object: object.to_string(),
        condition: c.map(|c| c.type_.clone()).unwrap_or_default(),
        reason: c.map(|c| c.reason.clone()).unwrap_or_default(),
        text,
    }
}

/// Problems of a DRPolicy.
pub fn drpolicy(p: &DRPolicy) -> Vec<Problem> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let object = format!("DRPolicy {name}");
    let conds = p
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let Some(c) = find(conds, ct::VALIDATED) else {
        return vec![problem(
            &object,
            None,
            "Ramen has not validated it yet. Is Ramen's hub operator running?".into(),
        )];
    };
    if c.status == "True" {
        return vec![];
    }
    let clusters = p.spec.dr_clusters.join(", ");
    let what = match c.reason.as_str() {
        r::DR_CLUSTER_NOT_FOUND => format!(
            "It names DRClusters that do not exist (of {clusters}). Create them with `drbridge dr cluster add`."
        ),
        r::DR_CLUSTERS_UNAVAILABLE => format!(
            "None of its DRClusters ({clusters}) is validated yet; their own problems say why."
        ),
        r::DR_CLUSTER_DETAILS_FAILED => "Ramen cannot read the managed clusters of the policy: each needs a \
             joined ManagedCluster reporting the id.k8s.io cluster claim (is the cluster's agent connected?)."
            .to_string(),
        r::DR_POLICY_CONFLICT_FOUND => {
            "It overlaps with another DRPolicy for the same clusters.".to_string()
        }
        r::VALIDATION_FAILED => "It is not valid.".to_string(),
        _ => "It is not validated.".to_string(),
    };
    vec![problem(
        &object,
        Some(c),
        format!("{what} {}{}", quote(c), older(c, p.metadata.generation)),
    )]
}

/// Problems of a DRCluster.
pub fn drcluster(d: &DRCluster) -> Vec<Problem> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let object = format!("DRCluster {name}");
    let status = d.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    match find(&status.conditions, ct::VALIDATED) {
        None => out.push(problem(
            &object,
            None,
            "Ramen has not validated it yet. Is Ramen's hub operator running?".into(),
        )),
        Some(c) if c.status == "True" => {}
        Some(c) => {
            let profile = &d.spec.s3_profile_name;
            let what = match c.reason.as_str() {
                r::CONFIG_MAP_GET_FAILED => format!(
                    "Ramen cannot read its configuration (ConfigMap {}).",
                    config::HUB_CONFIGMAP
                ),
                r::S3_CONNECTION_FAILED => format!(
                    "Ramen cannot use S3 profile {profile}: is it in the hub's RamenConfig, and does its \
                     credentials Secret exist (`drbridge dr s3-profile add`)?"
                ),
                r::S3_BUCKET_NOT_FOUND => format!(
                    "The bucket of S3 profile {profile} does not exist or cannot be reached; Ramen never \
                     creates buckets."
                ),
                r::S3_LIST_FAILED => format!(
                    "Ramen reaches S3 profile {profile} but cannot list its bucket: check the \
                     credentials' permissions."
                ),
                r::DR_CLUSTERS_DEPLOY_FAILED => {
                    format!("Ramen could not deploy its DR-cluster components to {name}.")
                }
                r::DR_CLUSTERS_DEPLOY_STATUS_CHECK_FAILED => format!(
                    "Ramen's ManifestWork ramen-dr-cluster is not yet Applied and Available on {name}: \
                     is the cluster's agent connected?"
                ),
                r::DR_CLUSTER_CONFIG_IN_PROGRESS => format!(
                    "Ramen waits for the DRClusterConfig on {name} (view {name}-drcconfig-mcv): is \
                     Ramen's DR-cluster operator running there?"
                ),
                r::FINALIZER_ADD_FAILED => "Ramen could not add its finalizer.".to_string(),
                r::VALIDATION_FAILED => "Its CIDRs are not valid.".to_string(),
                r::INITIALIZING => "Ramen is still initializing it.".to_string(),
                _ => "It is not validated.".to_string(),
            };
            out.push(problem(
                &object,
                Some(c),
                format!("{what} {}{}", quote(c), older(c, d.metadata.generation)),
            ));
        }
    }
    if matches!(status.phase.as_str(), "Fencing" | "Fenced") {
        out.push(problem(
            &object,
            None,
            format!("It is {} (Metro DR fencing).", status.phase.to_lowercase()),
        ));
    }
    out
}

/// Problems of a DRPC. `current` is the cluster the application runs on, if known.
pub fn drpc(d: &DRPlacementControl, current: Option<&str>) -> Vec<Problem> {
    let object = format!(
        "DRPlacementControl {}/{}",
        d.metadata.namespace.clone().unwrap_or_default(),
        d.metadata.name.clone().unwrap_or_default()
    );
    let Some(status) = &d.status else {
        return vec![problem(
            &object,
            None,
            "Ramen has not reported any status yet. Is Ramen's hub operator running?".into(),
        )];
    };
    let g = d.metadata.generation;
    let mut out = Vec::new();
    let on = current.map(|c| format!(" on {c}")).unwrap_or_default();
    let in_action = d.spec.action.is_some() && status.progression != progression::COMPLETED;
    if let Some(c) = find(&status.conditions, ct::AVAILABLE)
        && c.status != "True"
    {
        let what = if c.reason == r::PAUSED {
            "Ramen paused it and waits for you (typically after a hub recovery): run the failover or \
             relocate you intend."
                .to_string()
        } else if in_action {
            format!("The application is not available{on} while the action runs.")
        } else {
            format!("The application is not available{on}.")
        };
        out.push(problem(
            &object,
            Some(c),
            format!("{what} {}{}", quote(c), older(c, g)),
        ));
    }
    if let Some(c) = find(&status.conditions, ct::PEER_READY)
        && c.status != "True"
    {
        let what = if in_action || c.reason == r::NOT_STARTED {
            "The peer cluster is not ready while the action runs; failover and relocate wait for it."
        } else {
            "The peer cluster is not ready for a failover or relocate."
        };
        out.push(problem(
            &object,
            Some(c),
            format!("{what} {}{}", quote(c), older(c, g)),
        ));
    }
    if let Some(c) = find(&status.conditions, ct::PROTECTED)
        && c.status != "True"
    {
        let what = match c.reason.as_str() {
            r::ERROR => format!("The application is not protected{on}: Ramen reports an error."),
            r::PROGRESSING => format!("Protection of the application{on} is still being set up."),
            _ => format!("Ramen cannot tell whether the application is protected{on}."),
        };
        out.push(problem(
            &object,
            Some(c),
            format!("{what} {}{}", quote(c), older(c, g)),
        ));
    }
    if status.progression == progression::WAIT_ON_USER_TO_CLEAN_UP {
        let namespaces = d
            .spec
            .protected_namespaces
            .clone()
            .unwrap_or_default()
            .join(", ");
        let from = if namespaces.is_empty() {
            "the old cluster".to_string()
        } else {
            format!("namespace(s) {namespaces} on the cluster it left")
        };
        out.push(problem(
            &object,
            None,
            format!(
                "Ramen waits for you to delete the application's resources from {from}; it finishes \
                 the action once they are gone."
            ),
        ));
    }
    out
}

/// Problems of a VRG seen on `cluster`.
pub fn vrg(cluster: &str, v: &VolumeReplicationGroup) -> Vec<Problem> {
    let object = format!("VRG on {cluster}");
    let Some(status) = &v.status else {
        return vec![problem(
            &object,
            None,
            "Ramen's DR-cluster operator has not reported its status yet.".into(),
        )];
    };
    let mut out = Vec::new();
    if let Some(g) = v.metadata.generation
        && status.observed_generation < g
    {
        out.push(problem(
            &object,
            None,
            format!(
                "It has not processed its latest spec yet (generation {g}, observed {}).",
                status.observed_generation
            ),
        ));
    }
    let primary = status.state == vrg_state::PRIMARY;
    for c in &status.conditions {
        if c.status == "True" {
            continue;
        }
        let what = match c.type_.as_str() {
            // A primary replicates, so its data is never "protected" in the peer's sense.
            ct::DATA_PROTECTED if primary => continue,
            ct::DATA_READY => "Its volumes' data is not ready.",
            ct::DATA_PROTECTED => "Its volumes are not yet in sync with the peer.",
            ct::CLUSTER_DATA_READY => "Its PV/PVC data has not been restored from S3 yet.",
            ct::CLUSTER_DATA_PROTECTED => {
                "Its PV/PVC data and kube objects are not yet uploaded to S3; a relocate waits for it."
            }
            ct::KUBE_OBJECTS_READY => "Its kube objects are not restored yet.",
            ct::NO_CLUSTER_DATA_CONFLICT => "The two clusters' data conflict.",
            _ => "A condition is not met.",
        };
        out.push(problem(
            &object,
            Some(c),
            format!("{what} {}{}", quote(c), older(c, v.metadata.generation)),
        ));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{DRClusterSpec, DRClusterStatus, DRPolicySpec, DRPolicyStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    pub(crate) fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(Default::default()),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn drpolicy_validation_in_words() {
        let mut p = DRPolicy::new(
            "dr-policy",
            DRPolicySpec {
                scheduling_interval: "5m".into(),
                dr_clusters: vec!["dr1".into(), "dr3".into()],
                ..Default::default()
            },
        );
        let texts = drpolicy(&p);
        assert_eq!(texts.len(), 1);
        assert!(
            texts[0].text.contains("has not validated it yet"),
            "{}",
            texts[0]
        );

        p.status = Some(DRPolicyStatus {
            conditions: vec![cond(
                "Validated",
                "False",
                "DRClusterNotFound",
                "failed to find DRClusters specified in policy ([dr3])",
            )],
            ..Default::default()
        });
        let texts = drpolicy(&p);
        assert_eq!(
            texts[0].to_string(),
            "DRPolicy dr-policy: It names DRClusters that do not exist (of dr1, dr3). Create them with \
             `drbridge dr cluster add`. (Ramen: DRClusterNotFound: failed to find DRClusters specified \
             in policy ([dr3]))"
        );
        assert_eq!(texts[0].reason, "DRClusterNotFound");

        p.status = Some(DRPolicyStatus {
            conditions: vec![cond("Validated", "True", "Succeeded", "drpolicy validated")],
            ..Default::default()
        });
        assert!(drpolicy(&p).is_empty());
    }

    #[test]
    fn drcluster_s3_failures_in_words() {
        let mut d = DRCluster::new(
            "dr1",
            DRClusterSpec {
                s3_profile_name: "minio-dr1".into(),
                ..Default::default()
            },
        );
        d.metadata.generation = Some(2);
        d.status = Some(DRClusterStatus {
            conditions: vec![cond(
                "Validated",
                "False",
                "s3BucketNotFound",
                "minio-dr1: NoSuchBucket: The specified bucket does not exist",
            )],
            ..Default::default()
        });
        let t = drcluster(&d);
        assert_eq!(t.len(), 1);
        assert!(
            t[0].text
                .starts_with("The bucket of S3 profile minio-dr1 does not exist")
        );
        assert!(
            t[0].text
                .contains("(Ramen: s3BucketNotFound: minio-dr1: NoSuchBucket")
        );
        assert!(
            t[0].text.ends_with("older version of the object."),
            "{}",
            t[0].text
        );
    }

    #[test]
    fn vrg_primary_replicating_is_not_a_problem() {
        use crate::types::{VolumeReplicationGroupSpec, VolumeReplicationGroupStatus};
        let mut v = VolumeReplicationGroup::new("app", VolumeReplicationGroupSpec::default());
        v.metadata.generation = Some(1);
        v.status = Some(VolumeReplicationGroupStatus {
            state: "Primary".into(),
            observed_generation: 1,
            conditions: vec![
                cond("DataReady", "True", "Ready", ""),
                cond("DataProtected", "False", "Replicating", "PVC in use"),
                cond("ClusterDataProtected", "False", "UploadError", "S3 down"),
            ],
            ..Default::default()
        });
        let t = vrg("dr1", &v);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            t[0].to_string(),
            "VRG on dr1: Its PV/PVC data and kube objects are not yet uploaded to S3; a relocate waits \
             for it. (Ramen: UploadError: S3 down)"
        );
    }
}
