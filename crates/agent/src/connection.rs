//! Staying connected to the hub: dial, run one session, pause, dial again. Kept apart
//! from one stream ([`crate::session`]) the way Konnectivity's agent keeps them apart.

use std::time::Duration;

use drbridge_tls::{ChannelOptions, TlsPaths, connect_channel};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{Instrument, info, info_span, warn};

use crate::agent::Agent;
use crate::cluster::Cluster;
use crate::pb::dispatch_client::DispatchClient;
use crate::record::RecordStore;
use crate::retry::{Backoff, stopped};
use crate::session::{Outcome, SessionEnd, is_not_leader, run_session};

/// Largest message the agent accepts or sends (a Sync carries works of up to ~1.5 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Where the hub is and how to prove who we are.
#[derive(Clone, Debug)]
pub struct HubEndpoint {
    pub endpoint: String,
    pub server_name: String,
    pub tls: TlsPaths,
    pub channel: ChannelOptions,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// First pause after a hub replica said it does not lead (see [`is_not_leader`]).
const NOT_LEADER_RETRY: Duration = Duration::from_millis(50);
/// Longest pause between tries while no replica leads (an election takes seconds).
const NOT_LEADER_RETRY_CAP: Duration = Duration::from_secs(1);

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ConnectError {
    message: String,
    /// The hub replica refused because it does not lead.
    not_leader: bool,
}

impl ConnectError {
    fn other(message: String) -> Self {
        Self {
            message,
            not_leader: false,
        }
    }
}

impl<C: Cluster, S: RecordStore> Agent<C, S> {
    /// Connects to the hub and keeps connected until `shutdown` turns true. Never deletes
    /// anything because the hub is unreachable: it only waits and retries.
    pub async fn run(
        &self,
        hub: &HubEndpoint,
        ready: &watch::Sender<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(hub.backoff_base, hub.backoff_cap);
        let mut not_leader_backoff = Backoff::new(NOT_LEADER_RETRY, NOT_LEADER_RETRY_CAP);
        let mut first = true;
        while !*shutdown.borrow() {
            if !first {
                self.metrics().reconnects.inc();
            }
            first = false;
            let span = info_span!("hub_stream", endpoint = %hub.endpoint);
            let outcome = self
                .connect_once(hub, ready, &mut shutdown)
                .instrument(span)
                .await;
            match &outcome {
                Ok(o) if o.end == SessionEnd::Shutdown => break,
                Ok(o) => {
                    if o.welcomed {
                        backoff.reset();
                    }
                    warn!(end = ?o.end, "stream to the hub ended");
                }
                Err(e) if e.not_leader => info!(error = %e, "this hub replica does not lead"),
                Err(e) => warn!(error = %e, "cannot reach the hub"),
            }
            let not_leader = match &outcome {
                Ok(o) => o.end == SessionEnd::NotLeader,
                Err(e) => e.not_leader,
            };
            // A replica that does not lead sends the agent on at once: another one (behind
            // the same Service) may; a short pause of its own keeps an election from
            // becoming a busy loop.
            let delay = if not_leader {
                not_leader_backoff.next_delay()
            } else {
                not_leader_backoff.reset();
                backoff.next_delay()
            };
            info!(?delay, "reconnecting after a pause");
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!("agent stopped");
    }

    async fn connect_once(
        &self,
        hub: &HubEndpoint,
        ready: &watch::Sender<bool>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, ConnectError> {
        let channel = connect_channel(
            &hub.endpoint,
            &hub.server_name,
            &hub.tls,
            hub.channel.clone(),
        )
        .await
        .map_err(|e| ConnectError::other(e.to_string()))?;
        let mut client = DispatchClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (tx, rx) = mpsc::channel(256);
        tx.send(self.hello())
            .await
            .map_err(|e| ConnectError::other(e.to_string()))?;
        self.metrics().sent("hello");
        let response = client
            .connect(ReceiverStream::new(rx))
            .await
            .map_err(|s| ConnectError {
                message: format!("{}: {}", s.code(), s.message()),
                not_leader: is_not_leader(&s),
            })?;
        let inbound = response.into_inner();
        Ok(run_session(self.session(), &tx, inbound, ready, shutdown).await)
    }
}
