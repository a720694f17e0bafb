//! The simulated world of the convergence test: a writer host over a
//! [`MemoryLogStore`], read replicas, offline-first clients, and a network
//! of encoded frames that the seeded RNG reorders, duplicates and drops.

use serde_json::{Value, json};
use tidemark_core::fields::JsonEdit;
use tidemark_core::limits::Limits;
use tidemark_core::log::{ConsistencyToken, Offset, Tidemark};
use tidemark_core::log_store::{LogStore, MemoryLogStore, read_range};
use tidemark_core::model::{
    CollectionKey, CollectionName, CollectionSchema, Fields, Namespace, RecordId,
};
use tidemark_core::outbox::Outbox;
use tidemark_core::replica::{
    ApplyError, Merging, Progress, ReadOnly, Replica, ReplicaMode, ReplicaShard,
};
use tidemark_core::shard::{ShardCount, ShardId};
use tidemark_core::snapshot::{Snapshot, SnapshotRecord};
use tidemark_core::vector::Metric;
use tidemark_core::wire::{self, Invalidation, LogRange, Message, WriteAck};
use tidemark_core::writer::{Edit, WriteBatch, WriteOp, WriterShard};
use tidemark_core::{ActorId, SigningKey, VerifyingKey};

pub const REPLICAS: usize = 5;
pub const CLIENTS: usize = 3;
pub const IDS: usize = 10;
pub const CHAOS_STEPS: usize = 60;

/// splitmix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Replica(usize),
    Client(usize),
}

enum Packet {
    /// An unsigned write batch from a client.
    Write { from: usize, frame: Vec<u8> },
    /// A request for the log of `shard` from `from` (an HTTP GET in real life).
    Fetch {
        peer: Peer,
        shard: ShardId,
        from: Offset,
    },
    /// A request for the writer's latest snapshot of `shard`.
    FetchSnapshot { peer: Peer, shard: ShardId },
    /// A signed frame from the writer.
    Frame { to: Peer, frame: Vec<u8> },
}

/// The writer host: shards in memory, logs and snapshots "on disk".
pub struct Writer {
    pub shards: Vec<WriterShard>,
    pub store: MemoryLogStore,
}

struct Client {
    outbox: Outbox,
    replica: Replica<Merging>,
    online: bool,
}

/// What the simulation does with a replica of either mode.
pub trait Follower {
    fn tidemark(&self) -> Tidemark;
    fn apply_range(&mut self, range: &LogRange) -> Result<Progress, ApplyError>;
    fn load_snapshot(&mut self, snapshot: &Snapshot) -> Result<bool, ApplyError>;
    /// Each shard's live records, in id order.
    fn records(&self) -> Vec<Vec<SnapshotRecord>>;
    /// Each shard's state as a snapshot (what a replica persists).
    fn snapshots(&self) -> Vec<Snapshot>;
}

impl<M: ReplicaMode> Follower for Replica<M> {
    fn tidemark(&self) -> Tidemark {
        Replica::tidemark(self)
    }

    fn apply_range(&mut self, range: &LogRange) -> Result<Progress, ApplyError> {
        Replica::apply_range(self, range)
    }

    fn load_snapshot(&mut self, snapshot: &Snapshot) -> Result<bool, ApplyError> {
        Replica::load_snapshot(self, snapshot)
    }

    fn records(&self) -> Vec<Vec<SnapshotRecord>> {
        self.shards().iter().map(shard_records).collect()
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        self.shards()
            .iter()
            .map(ReplicaShard::to_snapshot)
            .collect()
    }
}

fn shard_records<M: ReplicaMode>(shard: &ReplicaShard<M>) -> Vec<SnapshotRecord> {
    shard
        .records()
        .map(|(id, r)| SnapshotRecord {
            id: id.clone(),
            fields: r.fields.clone(),
            vector: r.vector.clone(),
        })
        .collect()
}

pub struct Sim {
    rng: Rng,
    time: i64,
    pub limits: Limits,
    pub key: CollectionKey,
    schema: CollectionSchema,
    signing: SigningKey,
    verifying: VerifyingKey,
    pub writer: Writer,
    /// Even-numbered read replicas are edges (read-only), odd ones keep
    /// documents.
    pub replicas: Vec<Box<dyn Follower>>,
    /// Each read replica's last persisted state (its own snapshots, encoded).
    saved: Vec<Option<Vec<Vec<u8>>>>,
    clients: Vec<Client>,
    network: Vec<Packet>,
    healing: bool,
    pub stats: Stats,
}

/// What happened during a run, to show the faults really occur.
#[derive(Default, Debug)]
pub struct Stats {
    pub gaps: usize,
    pub duplicate_entries: usize,
    pub dropped: usize,
    pub offline_writes: usize,
    pub replica_restarts: usize,
    pub client_restarts: usize,
    pub writer_restarts: usize,
    pub snapshots_loaded: usize,
}

/// Read replica `i`, empty: even-numbered ones are edges (read-only), odd
/// ones keep documents.
fn new_replica(
    i: usize,
    key: &CollectionKey,
    count: ShardCount,
    limits: &Limits,
) -> Box<dyn Follower> {
    if i.is_multiple_of(2) {
        Box::new(Replica::<ReadOnly>::new(key.clone(), count, limits.clone()))
    } else {
        Box::new(Replica::<Merging>::new(key.clone(), count, limits.clone()))
    }
}

fn writer_actor(shard: ShardId) -> ActorId {
    ActorId::from([
        0xF0,
        shard.0 as u8,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
    ])
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        let limits = Limits::default();
        let key = CollectionKey::new(
            Namespace::new("sim").unwrap(),
            CollectionName::new("records").unwrap(),
        );
        let count = ShardCount::new(4).unwrap();
        let schema = CollectionSchema::new(3, Metric::Cosine, count, &limits).unwrap();
        let signing = SigningKey::from_bytes(&[seed as u8; 32]);
        let shards = count
            .shards()
            .map(|s| WriterShard::new(key.clone(), schema, s, limits.clone()))
            .collect();
        Self {
            rng: Rng(seed),
            time: 0,
            verifying: signing.verifying_key(),
            signing,
            writer: Writer {
                shards,
                store: MemoryLogStore::new(),
            },
            replicas: (0..REPLICAS)
                .map(|i| new_replica(i, &key, count, &limits))
                .collect(),
            saved: vec![None; REPLICAS],
            clients: (0..CLIENTS)
                .map(|i| Client {
                    outbox: Outbox::new(key.clone(), &ActorId::from([i as u8 + 1; 16])),
                    replica: Replica::new(key.clone(), count, limits.clone()),
                    online: true,
                })
                .collect(),
            network: Vec::new(),
            healing: false,
            stats: Stats::default(),
            limits,
            key,
            schema,
        }
    }

    fn id(&mut self) -> RecordId {
        RecordId::new(format!("r{}", self.rng.below(IDS)), &self.limits).unwrap()
    }

    fn value(&mut self) -> Value {
        match self.rng.below(6) {
            0 => Value::Null,
            1 => json!(self.rng.below(5)),
            2 => json!(format!("s{}", self.rng.below(4))),
            3 => json!(self.rng.below(100) as f64 / 8.0),
            4 => json!([self.rng.below(3), "x"]),
            _ => json!({"n": self.rng.below(3), "m": {"k": self.rng.below(2) == 0}}),
        }
    }

    fn fields(&mut self) -> Fields {
        (0..self.rng.below(4))
            .map(|_| {
                let key = ["a", "b", "c", "d"][self.rng.below(4)].to_owned();
                (key, self.value())
            })
            .collect()
    }

    fn edit(&mut self) -> JsonEdit {
        match self.rng.below(10) {
            0..=2 => JsonEdit::Put(self.fields()),
            3..=8 => JsonEdit::Patch(self.fields()),
            _ => JsonEdit::Delete,
        }
    }

    fn vector(&mut self) -> Option<Vec<f32>> {
        self.rng
            .chance(40)
            .then(|| (0..3).map(|_| 1.0 + self.rng.below(4) as f32).collect())
    }

    fn send_signed(&mut self, to: Peer, message: &Message) {
        let frame = wire::encode_signed(message, &self.signing);
        self.network.push(Packet::Frame { to, frame });
    }

    pub fn count(&self) -> ShardCount {
        self.schema.shard_count
    }

    // --- the writer ---------------------------------------------------------

    /// Applies a batch shard by shard; `None` (no ack) if any shard refuses.
    fn writer_apply(&mut self, batch: &WriteBatch) -> Result<WriteAck, String> {
        self.time += 1;
        let mut token = ConsistencyToken::default();
        for (shard, sub) in batch.split_by_shard(self.count()) {
            let i = shard.0 as usize;
            let out = self.writer.shards[i]
                .apply(&sub, &writer_actor(shard), self.time)
                .map_err(|e| format!("writer refused a batch: {e}"))?;
            self.writer
                .store
                .append(shard, &out.entries)
                .map_err(|e| format!("store refused entries: {e}"))?;
            let pushed = out.entries;
            token.merge(&out.token);
            // Sometimes push the new entries to one random peer (a
            // subscription) and an invalidation to another: both may arrive
            // out of order or never, and gaps at the receiver follow.
            if !pushed.is_empty() && self.rng.chance(50) {
                let to = self.random_peer();
                let range = LogRange {
                    collection: self.key.clone(),
                    shard,
                    from: pushed[0].offset,
                    entries: pushed,
                };
                self.send_signed(to, &Message::LogRange(range));
                let to = self.random_peer();
                let head = self.writer.shards[i].head();
                let invalidation = Invalidation {
                    collection: self.key.clone(),
                    shard,
                    head,
                };
                self.send_signed(to, &Message::Invalidation(invalidation));
            }
        }
        Ok(WriteAck {
            client_ref: batch.client_ref,
            token,
        })
    }

    fn writer_json_write(&mut self) -> Result<(), String> {
        let ops = (0..1 + self.rng.below(3))
            .map(|_| {
                let id = self.id();
                let edit = Edit::Json(self.edit());
                let vector = self.vector();
                WriteOp { id, edit, vector }
            })
            .collect();
        let batch = WriteBatch {
            collection: self.key.clone(),
            client_ref: 0,
            ops,
        };
        self.writer_apply(&batch).map(|_| ())
    }

    fn writer_snapshot(&mut self) {
        for (i, shard) in self.writer.shards.iter().enumerate() {
            let snapshot = shard.snapshot(Some(vec![i as u8]));
            // Snapshots are stored as encoded frames and must survive it.
            let frame = wire::encode_signed(&Message::Snapshot(snapshot), &self.signing);
            match wire::decode_verified(&frame, &self.verifying, &self.limits) {
                Ok(Message::Snapshot(s)) => self.writer.store.put_snapshot(&s).unwrap(),
                other => panic!("snapshot did not round-trip: {other:?}"),
            }
        }
    }

    /// A crash: rebuild every shard from its latest snapshot and the log.
    fn writer_restart(&mut self) -> Result<(), String> {
        self.stats.writer_restarts += 1;
        for i in 0..self.writer.shards.len() {
            let restored = WriterShard::open(
                &self.writer.store,
                self.key.clone(),
                self.schema,
                ShardId(i as u32),
                self.limits.clone(),
            )
            .map_err(|e| format!("writer restore failed: {e}"))?;
            if restored.snapshot(None) != self.writer.shards[i].snapshot(None) {
                return Err(format!(
                    "restored shard {i} differs from the one that crashed"
                ));
            }
            self.writer.shards[i] = restored;
        }
        Ok(())
    }

    fn serve_fetch(&mut self, peer: Peer, shard: ShardId, from: Offset) {
        // Small pages during the chaos (more reordering), big ones once healed.
        let page = if self.healing {
            256
        } else {
            1 + self.rng.below(6)
        };
        let range = read_range(&self.writer.store, &self.key, shard, from, page).unwrap();
        self.send_signed(peer, &Message::LogRange(range));
    }

    // --- peers --------------------------------------------------------------

    fn random_peer(&mut self) -> Peer {
        let n = self.rng.below(REPLICAS + CLIENTS);
        if n < REPLICAS {
            Peer::Replica(n)
        } else {
            Peer::Client(n - REPLICAS)
        }
    }

    fn replica_of(&mut self, peer: Peer) -> &mut dyn Follower {
        match peer {
            Peer::Replica(i) => self.replicas[i].as_mut(),
            Peer::Client(i) => &mut self.clients[i].replica,
        }
    }

    fn online(&self, peer: Peer) -> bool {
        match peer {
            Peer::Replica(_) => true,
            Peer::Client(i) => self.clients[i].online,
        }
    }

    fn fetch(&mut self, peer: Peer, shard: ShardId) {
        if self.online(peer) {
            let from = self.replica_of(peer).tidemark().get(shard);
            self.network.push(Packet::Fetch { peer, shard, from });
        }
    }

    fn receive(&mut self, to: Peer, frame: &[u8]) -> Result<(), String> {
        let message = wire::decode_verified(frame, &self.verifying, &self.limits)
            .map_err(|e| format!("a writer frame did not verify: {e}"))?;
        match message {
            Message::LogRange(range) => {
                let progress = self
                    .replica_of(to)
                    .apply_range(&range)
                    .map_err(|e| format!("replica refused a range: {e}"))?;
                if let Progress::Applied { applied, .. } = progress {
                    self.stats.duplicate_entries += range.entries.len() - applied;
                }
                if let Progress::Gap { missing } = progress {
                    self.stats.gaps += 1;
                    self.network.push(Packet::Fetch {
                        peer: to,
                        shard: range.shard,
                        from: missing.start,
                    });
                }
            }
            Message::Snapshot(snapshot) => {
                let loaded = self
                    .replica_of(to)
                    .load_snapshot(&snapshot)
                    .map_err(|e| format!("replica refused a snapshot: {e}"))?;
                if loaded {
                    self.stats.snapshots_loaded += 1;
                }
            }
            Message::Invalidation(invalidation) => {
                if self.replica_of(to).tidemark().get(invalidation.shard) < invalidation.head {
                    self.fetch(to, invalidation.shard);
                }
            }
            Message::WriteAck(ack) => {
                if let Peer::Client(i) = to {
                    self.clients[i].outbox.ack(&ack);
                }
            }
            Message::WriteBatch(_) => return Err("a peer received a write batch".into()),
        }
        if let Peer::Client(i) = to {
            let client = &mut self.clients[i];
            client.outbox.settle(&client.replica.tidemark());
        }
        Ok(())
    }

    fn deliver(&mut self, packet: Packet) -> Result<(), String> {
        match packet {
            Packet::Write { from, frame } => {
                let batch = match wire::decode(&frame, &self.limits) {
                    Ok(Message::WriteBatch(batch)) => batch,
                    other => return Err(format!("writer got {other:?}")),
                };
                let ack = self.writer_apply(&batch)?;
                self.send_signed(Peer::Client(from), &Message::WriteAck(ack));
            }
            Packet::Fetch { peer, shard, from } => self.serve_fetch(peer, shard, from),
            Packet::FetchSnapshot { peer, shard } => {
                if let Some(snapshot) = self.writer.store.latest_snapshot(shard).unwrap() {
                    self.send_signed(peer, &Message::Snapshot(snapshot));
                }
            }
            Packet::Frame { to, frame } => {
                if self.online(to) {
                    self.receive(to, &frame)?;
                }
            }
        }
        Ok(())
    }

    fn client_write(&mut self, i: usize) -> Result<(), String> {
        self.time += 1;
        if !self.clients[i].online {
            self.stats.offline_writes += 1;
        }
        let id = self.id();
        let edit = self.rng.chance(85).then(|| self.edit());
        let vector = self.vector();
        let client = &mut self.clients[i];
        client
            .outbox
            .write(
                &client.replica,
                id,
                edit.as_ref(),
                vector,
                &self.schema,
                &self.limits,
                self.time,
            )
            .map_err(|e| format!("client {i} could not write: {e}"))?;
        Ok(())
    }

    fn client_send(&mut self, i: usize) {
        let client = &self.clients[i];
        if !client.online {
            return;
        }
        if let Some(batch) = client.outbox.next_batch(1 + self.rng.below(8)) {
            let frame = wire::encode(&Message::WriteBatch(batch));
            self.network.push(Packet::Write { from: i, frame });
        }
    }

    /// A client restarts from what it persisted: its outbox and replica, saved
    /// together after every change (as the SDK does in one IndexedDB
    /// transaction). In-flight messages to it are lost.
    fn client_restart(&mut self, i: usize) -> Result<(), String> {
        self.stats.client_restarts += 1;
        let bytes = self.clients[i].outbox.to_bytes();
        let outbox =
            Outbox::from_bytes(&bytes, &self.limits).map_err(|e| format!("outbox: {e}"))?;
        let saved = encode_replica(&self.clients[i].replica, &self.signing);
        let mut replica = Replica::new(self.key.clone(), self.count(), self.limits.clone());
        load_replica(&mut replica, &saved, &self.verifying, &self.limits)?;
        self.clients[i].outbox = outbox;
        self.clients[i].replica = replica;
        self.network
            .retain(|p| !matches!(p, Packet::Frame { to: Peer::Client(c), .. } if *c == i));
        Ok(())
    }

    /// A read replica loses its memory and starts again from its own saved
    /// snapshots, the writer's, or nothing.
    fn replica_restart(&mut self, i: usize) -> Result<(), String> {
        self.stats.replica_restarts += 1;
        let mut replica = new_replica(i, &self.key, self.count(), &self.limits);
        match self.rng.below(3) {
            0 => {
                if let Some(saved) = &self.saved[i] {
                    load_replica(replica.as_mut(), saved, &self.verifying, &self.limits)?;
                }
            }
            1 => {
                for shard in self.count().shards() {
                    self.network.push(Packet::FetchSnapshot {
                        peer: Peer::Replica(i),
                        shard,
                    });
                }
            }
            _ => {}
        }
        self.replicas[i] = replica;
        Ok(())
    }

    pub fn step(&mut self) -> Result<(), String> {
        match self.rng.below(100) {
            0..=11 => self.writer_json_write()?,
            12..=27 => {
                let i = self.rng.below(CLIENTS);
                self.client_write(i)?;
            }
            28..=33 => {
                let i = self.rng.below(CLIENTS);
                self.clients[i].online = !self.clients[i].online;
            }
            34..=41 => {
                let i = self.rng.below(CLIENTS);
                self.client_send(i);
            }
            42..=49 => {
                let peer = self.random_peer();
                let shard = ShardId(self.rng.below(4) as u32);
                if self.rng.chance(20) && self.online(peer) {
                    // A peer that is far behind bootstraps from the writer's
                    // snapshot (a browser with pending writes included).
                    self.network.push(Packet::FetchSnapshot { peer, shard });
                } else {
                    self.fetch(peer, shard);
                }
            }
            50..=89 => {
                if !self.network.is_empty() {
                    let index = self.rng.below(self.network.len());
                    let packet = self.network.swap_remove(index);
                    match self.rng.below(10) {
                        0 => self.stats.dropped += 1,
                        1 => {
                            // duplicated: deliver one copy now, keep one for later
                            if let Some(copy) = copy(&packet) {
                                self.network.push(copy);
                            }
                            self.deliver(packet)?;
                        }
                        _ => self.deliver(packet)?,
                    }
                }
            }
            90..=91 => {
                let i = self.rng.below(REPLICAS);
                self.saved[i] = Some(encode_replica(self.replicas[i].as_ref(), &self.signing));
            }
            92..=93 => {
                let i = self.rng.below(REPLICAS);
                self.replica_restart(i)?;
            }
            94..=95 => self.writer_snapshot(),
            96 => self.writer_restart()?,
            97..=98 => {
                let i = self.rng.below(CLIENTS);
                self.client_restart(i)?;
            }
            _ => {
                // A burst of deliveries, so queues drain during the chaos too.
                for _ in 0..10 {
                    if self.network.is_empty() {
                        break;
                    }
                    let packet = self.network.swap_remove(self.rng.below(self.network.len()));
                    self.deliver(packet)?;
                }
            }
        }
        Ok(())
    }

    /// No more faults: everyone online, every request retried until the
    /// network is quiet and every outbox empty.
    pub fn heal(&mut self) -> Result<(), String> {
        for client in &mut self.clients {
            client.online = true;
        }
        self.healing = true;
        for _round in 0..200 {
            for i in 0..CLIENTS {
                self.client_send(i);
            }
            let peers: Vec<Peer> = (0..REPLICAS)
                .map(Peer::Replica)
                .chain((0..CLIENTS).map(Peer::Client))
                .collect();
            // Each peer polls the heads (a cheap unsigned request in real
            // life, not modelled) and fetches the shards it is behind on.
            for peer in peers {
                for shard in self.count().shards() {
                    let head = self.writer.shards[shard.0 as usize].head();
                    if self.replica_of(peer).tidemark().get(shard) < head {
                        self.fetch(peer, shard);
                    }
                }
            }
            while !self.network.is_empty() {
                let packet = self.network.swap_remove(self.rng.below(self.network.len()));
                self.deliver(packet)?;
            }
            if self.quiet() {
                return Ok(());
            }
        }
        Err("the system did not quiesce after healing".into())
    }

    fn quiet(&self) -> bool {
        let heads: Vec<Offset> = self.writer.shards.iter().map(|s| s.head()).collect();
        let caught_up = |r: &dyn Follower| {
            let tidemark = r.tidemark();
            self.count()
                .shards()
                .zip(&heads)
                .all(|(s, head)| tidemark.get(s) == *head)
        };
        self.replicas.iter().all(|r| caught_up(r.as_ref()))
            && self
                .clients
                .iter()
                .all(|c| c.outbox.writes().is_empty() && caught_up(&c.replica))
    }

    /// Every replica and client sees exactly the writer's state.
    pub fn check(&self) -> Result<(), String> {
        let expected: Vec<Vec<SnapshotRecord>> = self
            .writer
            .shards
            .iter()
            .map(|s| s.live_records())
            .collect();
        let compare = |name: String, replica: &dyn Follower| -> Result<(), String> {
            for (shard, (got, want)) in replica.records().iter().zip(&expected).enumerate() {
                if got != want {
                    return Err(format!(
                        "{name} shard {shard} diverged:\n  replica {got:?}\n  writer  {want:?}"
                    ));
                }
            }
            Ok(())
        };
        for (i, replica) in self.replicas.iter().enumerate() {
            compare(format!("replica {i}"), replica.as_ref())?;
        }
        for (i, client) in self.clients.iter().enumerate() {
            compare(format!("client {i}"), &client.replica)?;
            for n in 0..IDS {
                let id = RecordId::new(format!("r{n}"), &self.limits).unwrap();
                let shard = &self.writer.shards[self.key.shard_of(&id, self.count()).0 as usize];
                let want = shard.record(&id).filter(|(s, _)| !s.deleted);
                let view =
                    client
                        .outbox
                        .local_view(&client.replica, &id, &self.schema, &self.limits);
                let same = match (&view, &want) {
                    (None, None) => true,
                    (Some(v), Some((state, vector))) => {
                        v.fields == state.fields && v.vector.as_deref() == *vector
                    }
                    _ => false,
                };
                if !same {
                    return Err(format!(
                        "client {i} sees {id} as {view:?}, writer has {want:?}"
                    ));
                }
                // The merging replica's document agrees with the writer's.
                let doc_state = client.replica.doc(&id).map(|d| d.state());
                let writer_state = shard.doc(&id).map(|d| d.state());
                if doc_state != writer_state {
                    return Err(format!(
                        "client {i} document of {id} differs from the writer's"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn copy(packet: &Packet) -> Option<Packet> {
    Some(match packet {
        Packet::Write { from, frame } => Packet::Write {
            from: *from,
            frame: frame.clone(),
        },
        Packet::Fetch { peer, shard, from } => Packet::Fetch {
            peer: *peer,
            shard: *shard,
            from: *from,
        },
        Packet::FetchSnapshot { peer, shard } => Packet::FetchSnapshot {
            peer: *peer,
            shard: *shard,
        },
        Packet::Frame { to, frame } => Packet::Frame {
            to: *to,
            frame: frame.clone(),
        },
    })
}

/// A replica's state as the frames it would persist (one snapshot per shard).
fn encode_replica(replica: &dyn Follower, key: &SigningKey) -> Vec<Vec<u8>> {
    replica
        .snapshots()
        .into_iter()
        .map(|s| wire::encode_signed(&Message::Snapshot(s), key))
        .collect()
}

fn load_replica(
    replica: &mut dyn Follower,
    saved: &[Vec<u8>],
    key: &VerifyingKey,
    limits: &Limits,
) -> Result<(), String> {
    for frame in saved {
        match wire::decode_verified(frame, key, limits) {
            Ok(Message::Snapshot(snapshot)) => {
                replica
                    .load_snapshot(&snapshot)
                    .map_err(|e| format!("saved snapshot refused: {e}"))?;
            }
            other => return Err(format!("saved replica state unreadable: {other:?}")),
        }
    }
    Ok(())
}
