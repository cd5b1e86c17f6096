//! The agent's Prometheus metrics.

use drbridge_runtime::prometheus_client::metrics::counter::Counter;
use drbridge_runtime::prometheus_client::metrics::family::Family;
use drbridge_runtime::prometheus_client::metrics::gauge::Gauge;
use drbridge_runtime::prometheus_client::metrics::histogram::Histogram;
use drbridge_runtime::prometheus_client::registry::Registry;

/// Cheap to clone; every clone updates the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// How long one work's apply took: prepare, apply every manifest, record.
    pub apply_seconds: Histogram,
    /// Works applied (a new generation or incarnation; periodic re-applies excluded).
    pub works_applied: Counter,
    /// Manifests whose apply failed.
    pub apply_errors: Counter,
    /// Messages sent to the hub, by type.
    pub messages_sent: Family<Vec<(String, String)>, Counter>,
    /// 1 while a stream to the hub is established (after Welcome).
    pub connected: Gauge,
    /// Connection attempts after the first.
    pub reconnects: Counter,
    /// Works held in the durable record.
    pub works: Gauge,
    /// Views being watched.
    pub views: Gauge,
    /// Kubernetes Events announced, by reason and result.
    pub events: drbridge_runtime::events::EventCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            apply_seconds: drbridge_runtime::latency_histogram(),
            works_applied: Counter::default(),
            apply_errors: Counter::default(),
            messages_sent: Family::default(),
            connected: Gauge::default(),
            reconnects: Counter::default(),
            works: Gauge::default(),
            views: Gauge::default(),
            events: Family::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them under `drbridge_agent_`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("drbridge_agent");
        r.register(
            "works_applied",
            "Works applied (new generations)",
            m.works_applied.clone(),
        );
        r.register(
            "apply_errors",
            "Manifests whose apply failed",
            m.apply_errors.clone(),
        );
        r.register(
            "messages_sent",
            "Messages sent to the hub, by type",
            m.messages_sent.clone(),
        );
        r.register(
            "connected",
            "1 while connected to the hub",
            m.connected.clone(),
        );
        r.register(
            "reconnects",
            "Connection attempts after the first",
            m.reconnects.clone(),
        );
        r.register(
            "apply_duration_seconds",
            "How long one work's apply took (prepare, apply every manifest, record)",
            m.apply_seconds.clone(),
        );
        r.register("works", "Works held in the durable record", m.works.clone());
        r.register(
            "events",
            "Kubernetes Events announced, by reason and result (published, dropped, failed)",
            m.events.clone(),
        );
        r.register("views", "Views being watched", m.views.clone());
        m
    }

    pub fn sent(&self, kind: &str) {
        self.messages_sent
            .get_or_create(&vec![("type".to_string(), kind.to_string())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drbridge_runtime::prometheus_client::encoding::text::encode;

    #[test]
    fn registered_and_encoded() {
        let mut reg = Registry::default();
        let m = Metrics::register(&mut reg);
        m.works_applied.inc();
        m.sent("work_status");
        m.connected.set(1);
        let mut out = String::new();
        encode(&mut out, &reg).unwrap();
        assert!(
            out.contains("drbridge_agent_works_applied_total 1"),
            "{out}"
        );
        assert!(
            out.contains("drbridge_agent_messages_sent_total{type=\"work_status\"} 1"),
            "{out}"
        );
        assert!(out.contains("drbridge_agent_connected 1"), "{out}");
    }
}
