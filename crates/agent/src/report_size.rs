//! Reports that fit the hub's message limit. A report over it is refused by the hub, and
//! the agent would resend it on every reconnect forever; instead the agent sends what fits
//! and says, in the status itself, what it left out. Nothing is applied or deleted
//! differently: only the report shrinks.

use drbridge_model::view::REASON_GET_RESOURCE_FAILED;
use prost::Message;

use crate::pb;

/// Room for the message's own framing (the `AgentMessage` wrapper and gRPC's header).
const FRAMING: usize = 1024;
/// What a manifest condition's message is cut to before manifests are left out.
const SHORT_MESSAGE: usize = 256;
/// The work condition that says manifest statuses were left out.
pub const STATUS_TRUNCATED: &str = "drbridge.io/StatusTruncated";

fn budget(max: usize) -> usize {
    max.saturating_sub(FRAMING)
}

/// Replaces a view's object by an error when it is too large to carry. The message must
/// not end with "not found": Ramen reads that as the object being absent.
pub fn fit_view(status: &mut pb::ViewStatus, max: usize) -> bool {
    let len = status.encoded_len();
    if len <= budget(max) {
        return false;
    }
    status.outcome = Some(pb::view_status::Outcome::Error(pb::ViewError {
        reason: REASON_GET_RESOURCE_FAILED.to_string(),
        message: format!(
            "failed to get resource with err: the object is {len} bytes, more than the {} \
             bytes an agent may report to the hub",
            budget(max)
        ),
    }));
    true
}

/// Shrinks a work's status to fit: first the manifests' condition messages are cut short,
/// then manifest statuses are left out from the end, and a work condition says how many.
/// Work-level conditions (Applied, Available, ...), which Ramen reads, always stay.
pub fn fit_work(status: &mut pb::WorkStatus, max: usize) -> bool {
    if status.encoded_len() <= budget(max) {
        return false;
    }
    for m in &mut status.manifests {
        for c in &mut m.conditions {
            truncate(&mut c.message, SHORT_MESSAGE);
        }
    }
    let total = status.manifests.len();
    let generation = status.generation;
    let marker = |kept: usize| pb::Condition {
        r#type: STATUS_TRUNCATED.to_string(),
        status: "True".to_string(),
        reason: "ReportTooLarge".to_string(),
        message: format!(
            "the status of {} of {total} manifests is left out: the report must stay under \
             {} bytes",
            total - kept,
            budget(max)
        ),
        observed_generation: generation,
        last_transition_time: String::new(),
    };
    if status.encoded_len() <= budget(max) {
        return true;
    }
    status.conditions.push(marker(total));
    // Leave manifests out from the end until it fits; the marker is rewritten with the count.
    while status.encoded_len() > budget(max) && !status.manifests.is_empty() {
        let over = status.encoded_len() - budget(max);
        let mut freed = 0;
        while freed < over {
            match status.manifests.pop() {
                Some(m) => freed += m.encoded_len() + 4,
                None => break,
            }
        }
        let kept = status.manifests.len();
        *status.conditions.last_mut().expect("marker pushed above") = marker(kept);
    }
    for c in &mut status.conditions {
        truncate(&mut c.message, SHORT_MESSAGE * 4);
    }
    true
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn manifest(i: i32, message_len: usize) -> pb::ManifestStatus {
        pb::ManifestStatus {
            meta: Some(pb::ResourceMeta {
                ordinal: i,
                kind: "ConfigMap".into(),
                name: format!("cm-{i}"),
                ..Default::default()
            }),
            conditions: vec![pb::Condition {
                r#type: "Applied".into(),
                status: "False".into(),
                message: "é".repeat(message_len / 2),
                ..Default::default()
            }],
        }
    }

    fn work(manifests: usize, message_len: usize) -> pb::WorkStatus {
        pb::WorkStatus {
            name: "w".into(),
            uid: "u".into(),
            generation: 3,
            conditions: vec![pb::Condition {
                r#type: "Applied".into(),
                status: "True".into(),
                ..Default::default()
            }],
            manifests: (0..manifests as i32)
                .map(|i| manifest(i, message_len))
                .collect(),
            observed_time: String::new(),
        }
    }

    fn wire_len<M: Message>(m: &M) -> usize {
        m.encoded_len()
    }

    #[test]
    fn a_report_that_fits_is_untouched() {
        let mut w = work(10, 100);
        let before = w.clone();
        assert!(!fit_work(&mut w, MAX));
        assert_eq!(w, before);
        let mut v = pb::ViewStatus {
            name: "v".into(),
            outcome: Some(pb::view_status::Outcome::Object(vec![b'x'; 1000])),
            ..Default::default()
        };
        let before = v.clone();
        assert!(!fit_view(&mut v, MAX));
        assert_eq!(v, before);
    }

    #[test]
    fn long_messages_are_cut_before_any_manifest_is_left_out() {
        let mut w = work(20, 10_000);
        assert!(wire_len(&w) > MAX);
        assert!(fit_work(&mut w, MAX));
        assert!(wire_len(&w) <= budget(MAX));
        assert_eq!(w.manifests.len(), 20);
        assert!(w.conditions.iter().all(|c| c.r#type != STATUS_TRUNCATED));
    }

    #[test]
    fn too_many_manifests_are_left_out_and_the_work_says_so() {
        let mut w = work(5_000, 200);
        assert!(wire_len(&w) > MAX);
        assert!(fit_work(&mut w, MAX));
        assert!(wire_len(&w) <= budget(MAX), "{}", wire_len(&w));
        assert!(!w.manifests.is_empty() && w.manifests.len() < 5_000);
        // The kept ones are the first, in order.
        assert!(
            w.manifests
                .iter()
                .enumerate()
                .all(|(i, m)| m.meta.as_ref().unwrap().ordinal == i as i32)
        );
        assert_eq!(w.conditions[0].r#type, "Applied", "work conditions stay");
        let marker = w
            .conditions
            .iter()
            .find(|c| c.r#type == STATUS_TRUNCATED)
            .unwrap();
        let left_out = 5_000 - w.manifests.len();
        assert!(
            marker
                .message
                .starts_with(&format!("the status of {left_out} of 5000 manifests")),
            "{}",
            marker.message
        );
        assert_eq!(marker.observed_generation, 3);
    }

    #[test]
    fn a_view_too_large_becomes_an_error_ramen_does_not_read_as_absent() {
        let mut v = pb::ViewStatus {
            name: "v".into(),
            generation: 2,
            outcome: Some(pb::view_status::Outcome::Object(vec![b'x'; 3 * MAX])),
            ..Default::default()
        };
        assert!(fit_view(&mut v, MAX));
        assert!(wire_len(&v) <= budget(MAX));
        let Some(pb::view_status::Outcome::Error(e)) = &v.outcome else {
            panic!("{v:?}")
        };
        assert_eq!(e.reason, REASON_GET_RESOURCE_FAILED);
        assert!(!e.message.ends_with("not found"), "{}", e.message);
        assert!(e.message.contains("more than the"), "{}", e.message);
        assert_eq!(v.generation, 2);
    }
}
