//! The simulated world: a fake hub API server, hub replicas electing a leader, managed
//! clusters with their agents, and the network between them; a seeded scheduler that
//! interleaves Ramen's changes, message deliveries and faults; and the invariant checks.
//!
//! Time is virtual. Each agent incarnation runs on its own current-thread tokio runtime with
//! paused time, advanced in lock step with the world's clock; dropping the runtime is a crash
//! (every task stops at whatever await it was at; the spoke's objects and the durable record
//! stay). The hub side is driven synchronously. Nothing here reads the wall clock or a random
//! source other than the seed, so a seed replays exactly (checked by a test).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use drbridge_agent::session::{Seen, accept_welcome, handle_sync};
use drbridge_agent::testing::FakeCluster;
use drbridge_agent::{Agent, WorkConfig};
use drbridge_hub::leader::next_epoch;
use drbridge_proto::v1 as pb;
use prost::Message;
use serde_json::{Value, json};
use tracing::info_span;

use crate::hub::{Ack, HubReplica, Reply};
use crate::hubapi::HubApi;
use crate::rng::Rng;
use crate::spoke::{SimCluster, SimStore};
use crate::{Config, Stats, Violation};

/// Replicas of the hub (the chart's two).
const REPLICAS: usize = 2;
/// Where every work's objects go on the spokes.
const APP_NS: &str = "app";
/// The kind of every manifest: one the agent's default allowlist lets through anywhere.
const KIND: &str = "VolumeReplicationGroup";
/// Manifests a work can have.
const MANIFESTS: usize = 3;

struct Session {
    conn: u64,
    welcomed: bool,
    seen: Seen,
    acks: Vec<tokio::task::JoinHandle<()>>,
}

struct AgentProc {
    // Dropped after `agent`: its tasks stop with the runtime.
    agent: Agent<FakeCluster, SimStore>,
    rt: tokio::runtime::Runtime,
    session: Option<Session>,
}

struct Spoke {
    name: String,
    cluster: SimCluster,
    store: SimStore,
    proc: Option<AgentProc>,
    partitioned: bool,
}

struct Conn {
    spoke: usize,
    replica: usize,
    to_hub: VecDeque<Vec<u8>>,
    to_agent: VecDeque<Vec<u8>>,
    agent_open: bool,
    hub_open: bool,
    /// A slow consumer: its messages move rarely.
    slow: bool,
}

pub struct World {
    cfg: Config,
    rng: Rng,
    now_ms: u64,
    api: HubApi,
    replicas: Vec<Option<HubReplica>>,
    /// The replica holding the Lease.
    leader: Option<usize>,
    spokes: Vec<Spoke>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// Faults are injected (false in the calm phase).
    faults: bool,
    stats: Stats,
    digest: std::collections::hash_map::DefaultHasher,
    trace: Option<Vec<String>>,
    /// A counter that makes every spec version distinct.
    versions: u64,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("now_ms", &self.now_ms)
            .field("leader", &self.leader)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

macro_rules! note {
    ($w:expr, $($arg:tt)*) => {
        if let Some(t) = $w.trace.as_mut() {
            t.push(format!("[{:>7} ms] {}", $w.now_ms, format!($($arg)*)));
        }
    };
}

fn encode<M: Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// What a message says, without the wall-clock times in conditions and heartbeats.
fn digest_of(up: bool, bytes: &[u8]) -> Vec<(String, String, i64, bool)> {
    use pb::agent_message::Body;
    if up {
        match pb::AgentMessage::decode(bytes).ok().and_then(|m| m.body) {
            Some(Body::WorkStatus(s)) => vec![("status".into(), s.uid, s.generation, false)],
            Some(Body::WorkGone(g)) => vec![("gone".into(), g.uid, 0, false)],
            Some(Body::SyncAck(a)) => vec![("ack".into(), String::new(), a.sync_id as i64, false)],
            Some(Body::Hello(h)) => h
                .known_works
                .into_iter()
                .map(|k| (k.name, k.uid, k.generation, k.deleting))
                .collect(),
            _ => vec![],
        }
    } else {
        match pb::HubMessage::decode(bytes).ok().and_then(|m| m.body) {
            Some(pb::hub_message::Body::Sync(s)) => s
                .works
                .into_iter()
                .map(|w| (w.name, w.uid, w.generation, w.deleting))
                .collect(),
            Some(pb::hub_message::Body::Welcome(w)) => {
                vec![("welcome".into(), w.cluster, w.epoch as i64, false)]
            }
            _ => vec![],
        }
    }
}

fn agent_config() -> WorkConfig {
    WorkConfig {
        // No periodic re-apply: it draws jitter from an unseeded source.
        reapply: None,
        ..WorkConfig::default()
    }
}

fn work_name(i: usize) -> String {
    format!("w{i}")
}

impl World {
    pub fn new(seed: u64, cfg: Config, traced: bool) -> Self {
        let mut rng = Rng::new(seed);
        let mut api = HubApi::default();
        let mut spokes = Vec::new();
        for i in 0..cfg.clusters {
            let name = format!("c{}", i + 1);
            api.add_cluster(&name);
            spokes.push(Spoke {
                cluster: SimCluster::new(&name, rng.fork()),
                store: SimStore::default(),
                name,
                proc: None,
                partitioned: false,
            });
        }
        let mut w = World {
            cfg,
            rng,
            now_ms: 0,
            api,
            replicas: (0..REPLICAS).map(|_| None).collect(),
            leader: None,
            spokes,
            conns: BTreeMap::new(),
            next_conn: 1,
            faults: true,
            stats: Stats::default(),
            digest: Default::default(),
            trace: traced.then(Vec::new),
            versions: 0,
        };
        for r in 0..REPLICAS {
            w.replicas[r] = Some(HubReplica::start(&w.api));
        }
        for s in 0..w.spokes.len() {
            w.start_agent(s);
        }
        w
    }

    pub fn trace_tail(&self, n: usize) -> String {
        let t = self.trace.as_deref().unwrap_or_default();
        t[t.len().saturating_sub(n)..].join("\n")
    }

    pub fn run(mut self) -> Result<Stats, Violation> {
        self.run_mut()
    }

    pub fn run_mut(&mut self) -> Result<Stats, Violation> {
        let _span = info_span!("schedule").entered();
        for _ in 0..self.cfg.fault_steps {
            self.step()?;
        }
        self.calm()?;
        self.stats.virtual_ms = self.now_ms;
        self.stats.digest = self.digest.finish();
        Ok(self.stats.clone())
    }

    fn mix(&mut self, what: impl Hash) {
        what.hash(&mut self.digest);
    }

    // ------------------------------------------------------------ agents

    fn start_agent(&mut self, s: usize) {
        let spoke = &mut self.spokes[s];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        let agent = {
            let _span = info_span!("agent", cluster = %spoke.name).entered();
            rt.block_on(Agent::start(
                std::sync::Arc::new(spoke.cluster.fake.clone()),
                std::sync::Arc::new(spoke.store.clone()),
                &spoke.name,
                agent_config(),
                Default::default(),
            ))
            .expect("the fake cluster and store do not fail")
        };
        spoke.proc = Some(AgentProc {
            agent,
            rt,
            session: None,
        });
        note!(self, "agent {} started", self.spokes[s].name);
    }

    fn crash_agent(&mut self, s: usize) {
        if let Some(p) = self.spokes[s].proc.take() {
            if let Some(sess) = &p.session
                && let Some(c) = self.conns.get_mut(&sess.conn)
            {
                c.agent_open = false;
                c.to_agent.clear();
            }
            drop(p.agent);
            drop(p.rt);
            self.stats.crashes += 1;
            note!(self, "agent {} crashed", self.spokes[s].name);
        }
    }

    /// Whether `conn` is the running agent's current session on spoke `s`.
    fn is_session_of(&self, s: usize, conn: u64) -> bool {
        self.spokes[s]
            .proc
            .as_ref()
            .and_then(|p| p.session.as_ref())
            .is_some_and(|x| x.conn == conn)
    }

    /// The agent side of a connection ends (it noticed, or it crashed).
    fn close_agent_side(&mut self, s: usize) {
        let Some(p) = self.spokes[s].proc.as_mut() else {
            return;
        };
        if let Some(sess) = p.session.take() {
            for h in sess.acks {
                h.abort();
            }
            if let Some(c) = self.conns.get_mut(&sess.conn) {
                c.agent_open = false;
                c.to_agent.clear();
            }
            note!(
                self,
                "agent {} closed conn {}",
                self.spokes[s].name,
                sess.conn
            );
        }
    }

    fn close_hub_side(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.hub_open {
            c.hub_open = false;
            c.to_hub.clear();
            if let Some(r) = self.replicas[c.replica].as_mut() {
                r.close(conn);
            }
            note!(self, "hub closed conn {conn}");
        }
    }

    fn connect(&mut self, s: usize) {
        if self.spokes[s].partitioned {
            return;
        }
        if self.spokes[s]
            .proc
            .as_ref()
            .is_none_or(|p| p.session.is_some())
        {
            return;
        }
        // Behind one Service: any live replica may answer.
        let Some(r) = self.any_replica() else {
            return;
        };
        let p = self.spokes[s].proc.as_ref().expect("checked");
        let conn = self.next_conn;
        self.next_conn += 1;
        let cluster = self.spokes[s].name.clone();
        let replica = self.replicas[r].as_mut().expect("live");
        if let Err(e) = replica.accept(conn, &cluster) {
            note!(self, "{cluster} refused by replica {r}: {e}");
            return;
        }
        let hello = encode(&p.agent.hello());
        let slow = self.faults && self.rng.chance(15);
        self.conns.insert(
            conn,
            Conn {
                spoke: s,
                replica: r,
                to_hub: VecDeque::from([hello]),
                to_agent: VecDeque::new(),
                agent_open: true,
                hub_open: true,
                slow,
            },
        );
        self.spokes[s].proc.as_mut().expect("checked").session = Some(Session {
            conn,
            welcomed: false,
            seen: Seen::default(),
            acks: Vec::new(),
        });
        note!(self, "{cluster} connected to replica {r} as conn {conn}");
    }

    /// A message arrives at an agent.
    fn arrive_at_agent(&mut self, conn: u64, bytes: &[u8]) -> Result<(), Violation> {
        let s = self.conns[&conn].spoke;
        let name = self.spokes[s].name.clone();
        let msg = match pb::HubMessage::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.close_agent_side(s);
                return Ok(());
            }
        };
        let Some(p) = self.spokes[s].proc.as_mut() else {
            return Ok(());
        };
        let Some(sess) = p.session.as_mut().filter(|x| x.conn == conn) else {
            return Ok(());
        };
        match msg.body {
            Some(pb::hub_message::Body::Welcome(w)) if !sess.welcomed => {
                let accepted = {
                    let _span = info_span!("agent", cluster = %name).entered();
                    p.rt.block_on(accept_welcome(p.agent.session(), &w))
                };
                match accepted {
                    Ok(()) => {
                        sess.welcomed = true;
                        p.agent.outbox().resend_all();
                        note!(self, "{name} welcomed on conn {conn} (epoch {})", w.epoch);
                    }
                    Err(end) => {
                        note!(self, "{name} refused the hub on conn {conn}: {end:?}");
                        self.close_agent_side(s);
                    }
                }
            }
            Some(pb::hub_message::Body::Sync(sync)) if sess.welcomed => {
                // Invariant 4: a cluster receives only its own namespace's works.
                for w in &sync.works {
                    if self.api.namespace_of(&w.uid) != Some(name.as_str()) {
                        return Err(Violation::new(
                            4,
                            format!("{name} received work {} (uid {})", w.name, w.uid),
                        ));
                    }
                }
                note!(
                    self,
                    "{name} sync {} on conn {conn}: {:?}",
                    sync.sync_id,
                    sync.works
                        .iter()
                        .map(|w| (w.name.as_str(), w.generation, w.deleting))
                        .collect::<Vec<_>>()
                );
                let p = self.spokes[s].proc.as_mut().expect("checked");
                let sess = p.session.as_mut().expect("checked");
                let _guard = p.rt.enter();
                let done = handle_sync(p.agent.session(), sync, &mut sess.seen);
                let outbox = p.agent.outbox().clone();
                sess.acks.push(p.rt.spawn(async move {
                    let id = done.await;
                    outbox.ack(id);
                }));
            }
            // As run_session: heartbeats, and a second Welcome, are ignored.
            Some(pb::hub_message::Body::Heartbeat(_) | pb::hub_message::Body::Welcome(_)) => {}
            _ => {
                note!(self, "{name}: unexpected message on conn {conn}");
                self.close_agent_side(s);
            }
        }
        Ok(())
    }

    /// Virtual time passes on every agent; what they have to say goes out.
    fn advance(&mut self, ms: u64) -> Result<(), Violation> {
        self.now_ms += ms;
        for s in 0..self.spokes.len() {
            let name = self.spokes[s].name.clone();
            let Some(p) = self.spokes[s].proc.as_mut() else {
                continue;
            };
            {
                let _span = info_span!("agent", cluster = %name).entered();
                p.rt.block_on(async { tokio::time::sleep(Duration::from_millis(ms)).await });
            }
            if let Some(sess) = p.session.as_ref().filter(|x| x.welcomed)
                && let Some(c) = self.conns.get_mut(&sess.conn)
                && c.agent_open
            {
                for m in p.agent.outbox().drain() {
                    c.to_hub.push_back(encode(&m));
                }
            }
            self.check_spoke(s)?;
        }
        Ok(())
    }

    /// Invariants 2 and 4 on what a spoke saw.
    fn check_spoke(&mut self, s: usize) -> Result<(), Violation> {
        let name = self.spokes[s].name.clone();
        let (deleted, foreign) = {
            let mut log = self.spokes[s].cluster.log.lock().expect("not poisoned");
            (
                std::mem::take(&mut log.deleted),
                std::mem::take(&mut log.foreign),
            )
        };
        if let Some(f) = foreign.first() {
            return Err(Violation::new(4, format!("{name} was given {f}")));
        }
        for obj in deleted {
            note!(self, "{name} deleted {obj}");
            self.mix(("deleted", &name, &obj));
            let justified = self.api.incarnations.values().any(|inc| {
                inc.namespace == name
                    && inc.generations.iter().any(|(g, names)| {
                        names.contains(&obj)
                            && (inc.deleted
                                || inc
                                    .generations
                                    .range(g + 1..)
                                    .any(|(_, later)| !later.contains(&obj)))
                    })
            });
            if !justified {
                return Err(Violation::new(
                    2,
                    format!(
                        "{name} deleted {obj}, which no deleted work and no newer generation dropped"
                    ),
                ));
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------ hub

    fn arrive_at_hub(&mut self, conn: u64, bytes: &[u8]) -> Result<(), Violation> {
        let r = self.conns[&conn].replica;
        let Ok(msg) = pb::AgentMessage::decode(bytes) else {
            self.close_hub_side(conn);
            return Ok(());
        };
        let Some(replica) = self.replicas[r].as_mut() else {
            return Ok(());
        };
        let mut acks = Vec::new();
        let reply = replica.receive(conn, msg, &mut acks);
        self.check_acks(acks)?;
        self.reply(conn, reply);
        Ok(())
    }

    /// Invariant 1, its "acknowledged" half: an ack covers only what is recorded durably.
    fn check_acks(&mut self, acks: Vec<Ack>) -> Result<(), Violation> {
        for Ack { cluster, works } in acks {
            let s = self
                .spokes
                .iter()
                .position(|x| x.name == cluster)
                .expect("known cluster");
            for w in works.iter().filter(|w| !w.deleting) {
                if !self.spokes[s].store.recorded(&w.name, &w.uid, w.generation) {
                    return Err(Violation::new(
                        1,
                        format!(
                            "{cluster} acknowledged {} generation {} before recording it",
                            w.name, w.generation
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn reply(&mut self, conn: u64, reply: Reply) {
        match reply {
            Reply::Send(msgs) => {
                if let Some(c) = self.conns.get_mut(&conn)
                    && c.hub_open
                {
                    for m in msgs {
                        c.to_agent.push_back(encode(&m));
                    }
                }
            }
            Reply::Close(why) => {
                note!(self, "hub ends conn {conn}: {why}");
                self.close_hub_side(conn);
            }
        }
    }

    fn hub_round(
        &mut self,
        watch_events: usize,
        writes: usize,
        sweep: bool,
    ) -> Result<(), Violation> {
        for r in 0..REPLICAS {
            let Some(replica) = self.replicas[r].as_mut() else {
                continue;
            };
            replica.watch(&self.api, watch_events);
            replica.collect_intents(sweep);
            replica.write(&mut self.api, writes)?;
            let changes = replica.changes();
            for (conn, reply) in changes {
                self.reply(conn, reply);
            }
        }
        Ok(())
    }

    /// A live replica, chosen at random.
    fn any_replica(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..REPLICAS)
            .filter(|r| self.replicas[*r].is_some())
            .collect();
        (!live.is_empty()).then(|| live[self.rng.index(live.len())])
    }

    fn elect(&mut self) {
        if self.leader.is_some() {
            return;
        }
        let Some(r) = self.any_replica() else {
            return;
        };
        // The real rule: above the previous term's epoch, and at least the time in ms.
        let epoch = next_epoch(self.api.lease_epoch, 1_000_000 + self.now_ms);
        self.api.lease_epoch = Some(epoch);
        let replica = self.replicas[r].as_mut().expect("live");
        replica.epoch = Some(epoch);
        self.leader = Some(r);
        self.stats.terms += 1;
        note!(self, "replica {r} leads with epoch {epoch}");
    }

    /// A replica stops serving (its term ended, and it knows).
    fn step_down(&mut self, r: usize) {
        if let Some(replica) = self.replicas[r].as_mut() {
            replica.epoch = None;
        }
        let conns: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.replica == r)
            .map(|(id, _)| *id)
            .collect();
        for c in conns {
            self.close_hub_side(c);
        }
        if self.leader == Some(r) {
            self.leader = None;
        }
        note!(self, "replica {r} stepped down");
    }

    fn crash_hub(&mut self, r: usize) {
        self.step_down(r);
        self.replicas[r] = None;
        self.stats.crashes += 1;
        note!(self, "replica {r} crashed");
    }

    // ------------------------------------------------------------ Ramen

    fn spec(&mut self, cluster: &str, work: &str) -> Value {
        self.versions += 1;
        let v = self.versions;
        let mut manifests = Vec::new();
        for k in 0..MANIFESTS {
            if k == 0 || self.rng.chance(50) {
                manifests.push(json!({
                    "apiVersion": "ramendr.openshift.io/v1alpha1", "kind": KIND,
                    "metadata": {"name": format!("{work}-{k}"), "namespace": APP_NS},
                    "spec": {"cluster": cluster, "work": work, "version": v.to_string()},
                }));
            }
        }
        json!({"workload": {"manifests": manifests}})
    }

    fn ramen(&mut self) {
        let s = self.rng.index(self.spokes.len());
        let cluster = self.spokes[s].name.clone();
        let work = work_name(self.rng.index(self.cfg.works));
        let roll = self.rng.below(100);
        if roll < 55 {
            let spec = self.spec(&cluster, &work);
            note!(self, "ramen puts {cluster}/{work}");
            self.api.put_work(&cluster, &work, spec);
        } else if roll < 85 {
            note!(self, "ramen deletes {cluster}/{work}");
            self.api.delete_work(&cluster, &work);
        } else {
            // Never dispatched: the agent keeps the generation it has.
            note!(self, "ramen writes {cluster}/{work} without spec.workload");
            self.api
                .put_work(&cluster, &work, json!({"deleteOption": {}}));
        }
    }

    // ------------------------------------------------------------ network

    fn deliver_one(&mut self) -> Result<(), Violation> {
        let candidates: Vec<(u64, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| !self.spokes[c.spoke].partitioned)
            .flat_map(|(id, c)| {
                let mut v = Vec::new();
                if c.hub_open && !c.to_hub.is_empty() {
                    v.push((*id, true));
                }
                if c.agent_open && !c.to_agent.is_empty() {
                    v.push((*id, false));
                }
                v
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let (conn, up) = candidates[self.rng.index(candidates.len())];
        let c = self.conns.get_mut(&conn).expect("listed");
        if self.faults && c.slow && !self.rng.chance(20) {
            return Ok(());
        }
        let q = if up { &mut c.to_hub } else { &mut c.to_agent };
        let i = if self.faults && self.rng.chance(4) {
            self.stats.faults += 1;
            self.rng.index(q.len()) // reordered
        } else {
            0
        };
        let bytes = q.remove(i).expect("non-empty");
        if self.faults && self.rng.chance(3) {
            self.stats.faults += 1;
            note!(self, "dropped a message on conn {conn}");
            return Ok(());
        }
        if self.faults && self.rng.chance(3) {
            self.stats.faults += 1;
            q.push_front(bytes.clone()); // duplicated
        }
        self.stats.messages += 1;
        self.mix((conn, up, digest_of(up, &bytes)));
        if up {
            self.arrive_at_hub(conn, &bytes)
        } else {
            self.arrive_at_agent(conn, &bytes)
        }
    }

    /// The side that has not noticed a closed connection notices.
    fn notice_closes(&mut self, percent: u64) {
        let half: Vec<(u64, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.agent_open != c.hub_open)
            .map(|(id, c)| (*id, c.agent_open))
            .collect();
        for (conn, agent_open) in half {
            if !self.rng.chance(percent) {
                continue;
            }
            if agent_open {
                let s = self.conns[&conn].spoke;
                if self.is_session_of(s, conn) {
                    self.close_agent_side(s);
                } else if let Some(c) = self.conns.get_mut(&conn) {
                    c.agent_open = false;
                }
            } else {
                self.close_hub_side(conn);
            }
        }
        self.conns.retain(|_, c| c.agent_open || c.hub_open);
    }

    /// Another cluster's agent names this cluster's work in a report: the hub must drop it.
    fn forge(&mut self) {
        let Some((conn, cluster)) = self
            .conns
            .iter()
            .find(|(_, c)| c.hub_open)
            .map(|(id, c)| (*id, self.spokes[c.spoke].name.clone()))
        else {
            return;
        };
        let victim = self
            .api
            .works()
            .find(|w| w["metadata"]["namespace"] != cluster.as_str())
            .map(|w| {
                (
                    w["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    w["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    w["metadata"]["generation"].as_i64().unwrap_or_default(),
                )
            });
        let Some((name, uid, generation)) = victim else {
            return;
        };
        let cond = pb::Condition {
            r#type: "Applied".into(),
            status: "True".into(),
            reason: "Forged".into(),
            observed_generation: generation,
            ..Default::default()
        };
        let msgs = [
            pb::agent_message::Body::WorkStatus(pb::WorkStatus {
                name: name.clone(),
                uid: uid.clone(),
                generation,
                conditions: vec![cond],
                ..Default::default()
            }),
            pb::agent_message::Body::WorkGone(pb::WorkGone { name, uid }),
        ];
        let c = self.conns.get_mut(&conn).expect("found");
        for b in msgs {
            c.to_hub
                .push_back(encode(&pb::AgentMessage { body: Some(b) }));
        }
        note!(self, "{cluster} forges reports on conn {conn}");
    }

    // ------------------------------------------------------------ schedule

    fn step(&mut self) -> Result<(), Violation> {
        self.stats.steps += 1;
        let dt = 1 + self.rng.below(40);
        self.advance(dt)?;
        if self.rng.chance(12) {
            self.ramen();
        }
        for _ in 0..self.rng.below(6) {
            self.deliver_one()?;
        }
        let lag = if self.rng.chance(30) {
            0
        } else {
            1 + self.rng.index(4)
        };
        let sweep = self.rng.chance(5);
        let writes = self.rng.index(4);
        self.hub_round(lag, writes, sweep)?;
        self.elect_maybe();
        for s in 0..self.spokes.len() {
            if self.rng.chance(25) {
                self.connect(s);
            }
        }
        self.notice_closes(25);
        self.fault()?;
        Ok(())
    }

    fn elect_maybe(&mut self) {
        if self.leader.is_none() && self.rng.chance(30) {
            self.elect();
        }
    }

    fn fault(&mut self) -> Result<(), Violation> {
        let roll = self.rng.below(1000);
        let s = self.rng.index(self.spokes.len());
        let r = self.rng.index(REPLICAS);
        match roll {
            0..10 => {
                self.spokes[s].partitioned = !self.spokes[s].partitioned;
                note!(
                    self,
                    "{} partitioned: {}",
                    self.spokes[s].name,
                    self.spokes[s].partitioned
                );
                if self.spokes[s].partitioned && self.rng.chance(50) {
                    self.close_agent_side(s);
                }
            }
            10..30 => {
                // A broken stream: one side notices first.
                if let Some(conn) = self
                    .conns
                    .keys()
                    .nth(self.rng.index(self.conns.len().max(1)))
                    .copied()
                {
                    if self.rng.chance(50) {
                        self.close_hub_side(conn);
                    } else {
                        let s = self.conns[&conn].spoke;
                        if self.is_session_of(s, conn) {
                            self.close_agent_side(s);
                        }
                    }
                }
            }
            30..45 => {
                if self.spokes[s].proc.is_some() {
                    self.crash_agent(s);
                } else {
                    self.start_agent(s);
                }
            }
            45..60 if self.spokes[s].proc.is_none() => self.start_agent(s),
            60..68 => {
                if self.replicas[r].is_some() {
                    self.crash_hub(r);
                } else {
                    self.replicas[r] = Some(HubReplica::start(&self.api));
                    note!(self, "replica {r} started");
                }
            }
            68..80 if self.replicas[r].is_none() => {
                self.replicas[r] = Some(HubReplica::start(&self.api));
                note!(self, "replica {r} started");
            }
            80..92 => {
                // The Lease moves on; the old leader may not know yet (a paused process).
                if let Some(l) = self.leader {
                    if self.rng.chance(50) {
                        self.leader = None;
                        note!(
                            self,
                            "replica {l} lost the lease but still believes it leads"
                        );
                    } else {
                        self.step_down(l);
                    }
                }
            }
            92..100 => {
                // A replica that believes it leads without the Lease learns the truth.
                if self.leader != Some(r)
                    && self.replicas[r].as_ref().is_some_and(|x| x.epoch.is_some())
                {
                    self.step_down(r);
                }
            }
            100..110 => {
                if let Some(replica) = self.replicas[r].as_mut() {
                    replica.relist(&self.api);
                    note!(self, "replica {r} relisted");
                }
            }
            110..118 => self.forge(),
            _ => return Ok(()),
        }
        self.stats.faults += 1;
        Ok(())
    }

    /// Faults stop: everything restarts and heals, stale replicas learn, every stream is
    /// re-established; then the world must converge (invariant 1).
    fn calm(&mut self) -> Result<(), Violation> {
        self.faults = false;
        note!(self, "calm");
        for s in 0..self.spokes.len() {
            self.spokes[s].partitioned = false;
            if self.spokes[s].proc.is_none() {
                self.start_agent(s);
            }
            self.close_agent_side(s);
        }
        for r in 0..REPLICAS {
            if self.replicas[r].is_none() {
                self.replicas[r] = Some(HubReplica::start(&self.api));
            }
            if self.leader != Some(r) {
                self.step_down(r);
            }
        }
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_hub_side(c);
        }
        self.conns.clear();
        self.elect();
        let mut last_err = None;
        let start = self.now_ms;
        while self.now_ms - start < self.cfg.calm_ms {
            self.stats.steps += 1;
            self.advance(20)?;
            for _ in 0..64 {
                if self
                    .conns
                    .values()
                    .all(|c| c.to_hub.is_empty() && c.to_agent.is_empty())
                {
                    break;
                }
                self.deliver_one()?;
            }
            // A full sweep every virtual second, as the status writer's periodic one.
            let sweep = self.now_ms % 1000 < 20;
            self.hub_round(usize::MAX, usize::MAX, sweep)?;
            for s in 0..self.spokes.len() {
                self.connect(s);
            }
            self.notice_closes(100);
            if self.now_ms % 500 < 20 {
                match self.converged() {
                    Ok(()) => return Ok(()),
                    Err(e) => last_err = Some(e),
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Violation::new(1, "did not converge")))
    }

    /// Invariant 1: every desired state is applied, reported and acknowledged, every
    /// deleted work is cleaned up and released.
    fn converged(&self) -> Result<(), Violation> {
        let v = |d: String| Err(Violation::new(1, d));
        let leader = self
            .leader
            .and_then(|l| self.replicas[l].as_ref())
            .expect("a leader in the calm phase");
        let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for w in self.api.works() {
            let md = &w["metadata"];
            let (ns, name, uid) = (
                md["namespace"].as_str().unwrap_or_default(),
                md["name"].as_str().unwrap_or_default(),
                md["uid"].as_str().unwrap_or_default(),
            );
            let generation = md["generation"].as_i64().unwrap_or_default();
            if md.get("deletionTimestamp").is_some() {
                return v(format!("{ns}/{name} is deleting and still held"));
            }
            let s = self
                .spokes
                .iter()
                .position(|x| x.name == ns)
                .expect("known");
            let record = self.spokes[s].store.inner.snapshot().get(name).cloned();
            let inc = &self.api.incarnations[uid];
            // The generation the agent should hold: the latest the hub could dispatch.
            let Some((&want, names)) = inc.generations.iter().next_back() else {
                continue; // Never valid: never dispatched, nothing recorded for it.
            };
            let valid_now = want == generation;
            if !valid_now {
                // Rejected now (no spec.workload): the agent keeps what it had, if anything.
                match &record {
                    None => {}
                    Some(r) if r.uid == uid && r.generation <= want && !r.deleting => {
                        // Also whatever the record lists: an apply cut short by a crash
                        // recorded its generation (before applying, the union with the
                        // previous one's objects) and never deleted what it dropped; with no
                        // valid spec to send, the hub cannot have it finished. The next valid
                        // generation, or the work's deletion, removes them.
                        let kept = inc
                            .generations
                            .get(&r.generation)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .chain(r.resources.iter().map(|a| a.name.clone()));
                        for obj in kept {
                            expected.entry(ns.to_string()).or_default().insert(obj);
                        }
                    }
                    Some(r) => {
                        return v(format!(
                            "{ns}/{name}: spoke holds {:?} of a work rejected at generation {generation}",
                            (&r.uid, r.generation, r.deleting)
                        ));
                    }
                }
                continue;
            }
            match &record {
                Some(r) if r.uid == uid && r.generation == want && !r.deleting => {}
                other => {
                    return v(format!(
                        "{ns}/{name}: spoke holds {:?}, hub wants uid {uid} generation {want}",
                        other.as_ref().map(|r| (&r.uid, r.generation, r.deleting))
                    ));
                }
            }
            let spec_data: BTreeMap<String, Value> = w["spec"]["workload"]["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    Some((
                        m["metadata"]["name"].as_str()?.to_string(),
                        m["spec"].clone(),
                    ))
                })
                .collect();
            for obj in names {
                expected
                    .entry(ns.to_string())
                    .or_default()
                    .insert(obj.clone());
                let data = self.spokes[s]
                    .cluster
                    .fake
                    .object(KIND, APP_NS, obj)
                    .map(|o| o["spec"].clone());
                if data.as_ref() != spec_data.get(obj) {
                    let reported = self.spokes[s]
                        .proc
                        .as_ref()
                        .and_then(|p| p.agent.outbox().work(name));
                    return v(format!(
                        "{ns}/{name}: {obj} is {data:?}, not as generation {want} says; the agent reports {reported:?}"
                    ));
                }
            }
            {
                let applied = w["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "Applied")
                    .and_then(|c| c["observedGeneration"].as_i64());
                if applied != Some(generation) {
                    return v(format!(
                        "{ns}/{name}: hub status is of generation {applied:?}, not {generation}"
                    ));
                }
            }
        }
        for spoke in &self.spokes {
            let want = expected.get(&spoke.name).cloned().unwrap_or_default();
            for (kind, ns, name) in spoke.cluster.fake.names() {
                if kind == KIND && ns == APP_NS && !want.contains(&name) {
                    return v(format!("{}: {name} left behind", spoke.name));
                }
            }
            for r in spoke.store.inner.snapshot().values() {
                if self.api.work(&spoke.name, &r.name).is_none() {
                    return v(format!("{}: record of {} left behind", spoke.name, r.name));
                }
            }
            if let Some(since) = leader.acks.oldest(&spoke.name) {
                return v(format!("{}: unacknowledged since {since:?}", spoke.name));
            }
        }
        Ok(())
    }
}
