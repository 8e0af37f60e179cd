//! The consumer: one fetch thread per owned shard, a bounded channel to the
//! caller, a coordinator thread for discovery and balancing, and a lease
//! keeper thread for heartbeats and checkpoints.
//!
//! Records are read blocking: `for record in &consumer`, [`Consumer::next_timeout`]
//! or [`Consumer::next_batch`]. In automatic mode, asking for the next record
//! acknowledges the previous one; the last record returned before close is
//! not counted as processed.

mod coordinator;
mod events;
mod fetcher;
mod keeper;
mod record;
mod shard;
mod stats;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

pub use events::{ConsumerEvent, ConsumerEventKind};
pub use record::Record;
pub use stats::{ConsumerStats, ShardStats};

use crate::checkpoint::{
    new_owner_id, Checkpoint, Checkpointer, LeaseScope, LeaseSettings, MemoryCheckpointer, Position,
};
use crate::error::{Error, Result};
use crate::kinesis::{IteratorPosition, KinesisClient, StreamRef};
use crate::transport::ClientSettings;
use events::{EventCallback, Events};
use shard::{OwnedShard, TenureState};

/// Where shards without a checkpoint start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPosition {
    /// The oldest retained record (the default).
    TrimHorizon,
    /// Only records written after the consumer started.
    Latest,
    /// Records that arrived at or after this time.
    AtTimestamp(SystemTime),
}

/// Consumer options; see [`ConsumerBuilder`] for each one's meaning.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerOptions {
    pub initial_position: IteratorPosition,
    pub record_limit: u32,
    pub max_queue_size: usize,
    pub max_shard_consumers: Option<usize>,
    pub idle_timeout: Option<Duration>,
    pub checkpoint_interval: Duration,
    pub discovery_interval: Duration,
    pub idle_poll_interval: Duration,
    /// The longest pause between GetRecords calls of a shard that stays
    /// caught up; `None`: always `idle_poll_interval`.
    pub idle_poll_max_interval: Option<Duration>,
}

/// What travels from the threads to the caller.
pub(crate) enum Item {
    /// Consecutive records of one tenure (one channel operation per chunk,
    /// not per record).
    Records(Arc<OwnedShard>, Vec<Record>),
    /// Every record of the shard has been sent before this.
    ShardEnd(Arc<OwnedShard>),
    /// A problem the caller must hear of.
    Error(Error),
}

/// Consumer-wide counters.
#[derive(Debug, Default)]
pub(crate) struct ConsumerCounters {
    pub lease_gains: AtomicU64,
    pub lease_losses: AtomicU64,
    pub handoffs_given: AtomicU64,
    pub handoffs_received: AtomicU64,
    pub checkpoint_writes: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    pub heartbeats: AtomicU64,
    pub heartbeat_failures: AtomicU64,
    pub discovery_failures: AtomicU64,
}

/// State shared by the consumer's threads.
pub(crate) struct Context {
    /// Unique among the consumers of this process; records carry it.
    pub id: u64,
    /// The process that built the consumer: a forked child's copy must
    /// neither join threads it does not have nor write in the parent's name.
    created_in: u32,
    pub owner: String,
    pub stream: StreamRef,
    pub scope: LeaseScope,
    pub checkpointer: Arc<dyn Checkpointer>,
    pub settings: LeaseSettings,
    pub options: ConsumerOptions,
    pub kinesis: KinesisClient,
    pub counters: ConsumerCounters,
    /// Lease and checkpoint events for the host's callback.
    pub events: Events,
    /// Records per channel item; the channel holds max_queue_size records.
    pub chunk_size: usize,
    closing: AtomicBool,
    sender: Sender<Item>,
    /// Disconnected at close: wakes every sleeping thread at once.
    shutdown: Receiver<()>,
    wake: (Sender<()>, Receiver<()>),
    /// The current tenure of each shard held here.
    shards: Mutex<HashMap<Arc<str>, Arc<OwnedShard>>>,
    /// Ended tenures whose fetch threads have not finished yet; reaped
    /// without waiting, so no thread blocks on a fetcher stuck in a call.
    ended: Mutex<Vec<Arc<OwnedShard>>>,
}

impl Context {
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Sleeps `duration` unless the consumer closes first; false once closing.
    pub fn sleep(&self, duration: Duration) -> bool {
        if self.is_closing() {
            return false;
        }
        match self.shutdown.recv_timeout(duration) {
            Err(RecvTimeoutError::Timeout) => !self.is_closing(),
            _ => false,
        }
    }

    /// Waits for the next discovery cycle (or an early wake-up).
    fn wait_for_next_cycle(&self) -> bool {
        crossbeam_channel::select! {
            recv(self.shutdown) -> _ => false,
            recv(self.wake.1) -> _ => !self.is_closing(),
            default(self.options.discovery_interval) => !self.is_closing(),
        }
    }

    /// Tells the host's event callback (if any) about `shard_id`.
    pub fn emit(&self, kind: ConsumerEventKind, shard_id: &str, message: impl FnOnce() -> String) {
        self.events.emit(|| ConsumerEvent {
            kind,
            group: self.scope.group.clone(),
            stream: self.stream.to_string(),
            shard_id: shard_id.to_owned(),
            owner: self.owner.clone(),
            message: message(),
        });
    }

    /// Runs discovery soon (a shard finished; its children may start).
    pub fn wake_coordinator(&self) {
        let _ = self.wake.0.try_send(());
    }

    /// How long a successful lease write keeps a lease ours: a margin
    /// under session_timeout, after which others may take it.
    pub fn lease_time(&self) -> Duration {
        self.settings.session_timeout - self.settings.session_timeout / 10
    }

    /// Sends an item, blocking while the channel is full; gives up (false)
    /// when `shard` may no longer deliver or the consumer closes.
    pub fn deliver(&self, item: Item, shard: &OwnedShard) -> bool {
        if !shard.may_deliver(self) {
            return false;
        }
        let mut item = match self.sender.try_send(item) {
            Ok(()) => return true,
            Err(crossbeam_channel::TrySendError::Full(item)) => item,
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return false,
        };
        loop {
            if !shard.may_deliver(self) || self.is_closing() {
                return false;
            }
            match self.sender.send_timeout(item, Duration::from_millis(100)) {
                Ok(()) => return true,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => item = back,
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }

    /// Reports an error to the caller without blocking a full channel forever.
    pub fn deliver_error(&self, error: Error) {
        let mut item = Item::Error(error);
        while !self.is_closing() {
            match self.sender.send_timeout(item, Duration::from_millis(100)) {
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => item = back,
                _ => return,
            }
        }
    }

    pub fn owned_shards(&self) -> Vec<Arc<OwnedShard>> {
        self.shards
            .lock()
            .values()
            .filter(|s| s.is_live())
            .cloned()
            .collect()
    }

    /// Makes `shard` the shard's current tenure; false once the consumer is
    /// closing (the caller releases the lease itself). Checked under the
    /// lock the keeper's final snapshot takes, so every lease taken during
    /// close is released by one of them. A tenure still live here is never
    /// silently replaced: it is ended first (the table gave the lease out
    /// again, so it is not ours any more).
    pub fn add_owned_shard(&self, shard: Arc<OwnedShard>) -> bool {
        let previous = {
            let mut shards = self.shards.lock();
            if self.is_closing() {
                return false;
            }
            shards.insert(shard.shard_id.clone(), shard)
        };
        if let Some(previous) = previous {
            previous.mark_lost(self, "a new tenure of the shard started");
            self.ended.lock().push(previous);
        }
        true
    }

    /// Moves ended tenures out of the shard map and joins the fetch threads
    /// that have finished; never waits for one that has not.
    pub fn forget_ended_shards(&self) {
        let mut ended = self.ended.lock();
        self.shards.lock().retain(|_, shard| {
            let live = shard.is_live();
            if !live {
                ended.push(shard.clone());
            }
            live
        });
        ended.retain(|shard| !join_if_finished(shard));
    }

    /// Every tenure whose fetch thread may still run.
    fn all_tenures(&self) -> Vec<Arc<OwnedShard>> {
        let mut tenures: Vec<Arc<OwnedShard>> = self.shards.lock().values().cloned().collect();
        tenures.extend(self.ended.lock().iter().cloned());
        tenures
    }
}

/// Joins the tenure's fetch thread if it has finished; true once joined.
fn join_if_finished(shard: &OwnedShard) -> bool {
    let mut fetcher = shard.fetcher.lock();
    match fetcher.as_ref() {
        Some(handle) if !handle.is_finished() => false,
        _ => {
            if let Some(handle) = fetcher.take() {
                let _ = handle.join();
            }
            true
        }
    }
}

/// Waits until `finished` holds or `deadline` passes; false on the deadline.
fn wait_until(deadline: Instant, mut finished: impl FnMut() -> bool) -> bool {
    loop {
        if finished() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `timeout` from now; a timeout too long for the clock waits a year.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Builds a [`Consumer`].
#[derive(Debug, Clone)]
pub struct ConsumerBuilder {
    stream: String,
    checkpointer: Option<Arc<dyn Checkpointer>>,
    options: ConsumerOptions,
    client: ClientSettings,
    on_event: Option<EventCallback>,
}

impl ConsumerBuilder {
    /// The lease and checkpoint store [default: a new [`MemoryCheckpointer`]].
    pub fn checkpointer(mut self, checkpointer: impl Checkpointer + 'static) -> Self {
        self.checkpointer = Some(Arc::new(checkpointer));
        self
    }

    /// A shared checkpointer.
    pub fn shared_checkpointer(mut self, checkpointer: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// Where shards without a checkpoint start [TrimHorizon].
    pub fn initial_position(mut self, position: InitialPosition) -> Self {
        self.options.initial_position = match position {
            InitialPosition::TrimHorizon => IteratorPosition::TrimHorizon,
            InitialPosition::Latest => IteratorPosition::Latest,
            InitialPosition::AtTimestamp(time) => IteratorPosition::AtTimestamp(time),
        };
        self
    }

    /// Records per GetRecords call, 1 to 10 000 [10 000].
    pub fn record_limit(mut self, limit: u32) -> Self {
        self.options.record_limit = limit;
        self
    }

    /// Records buffered between the fetch threads and the caller [10 000].
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.options.max_queue_size = size;
        self
    }

    /// The most shards this consumer holds at once [all].
    pub fn max_shard_consumers(mut self, max: usize) -> Self {
        self.options.max_shard_consumers = Some(max);
        self
    }

    /// Iteration ends after this long without a record [never].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.options.idle_timeout = Some(timeout);
        self
    }

    /// Automatic checkpoints are written at most this often per shard [5 s].
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.options.checkpoint_interval = interval;
        self
    }

    /// How often shards and leases are discovered and balanced [5 s].
    pub fn discovery_interval(mut self, interval: Duration) -> Self {
        self.options.discovery_interval = interval;
        self
    }

    /// The pause between GetRecords calls of a caught-up shard [1 s].
    pub fn idle_poll_interval(mut self, interval: Duration) -> Self {
        self.options.idle_poll_interval = interval;
        self
    }

    /// Lets a shard that stays caught up be polled less often: each empty
    /// poll doubles its pause, from `idle_poll_interval` up to `interval`,
    /// and a poll that finds records goes back to `idle_poll_interval`.
    /// New records on a quiet shard are then seen up to `interval` late,
    /// for fewer calls on streams with many idle shards [off: every pause
    /// is `idle_poll_interval`].
    pub fn idle_poll_max_interval(mut self, interval: Duration) -> Self {
        self.options.idle_poll_max_interval = Some(interval);
        self
    }

    /// Calls `callback` the moment a lease is gained, lost, received or
    /// handed over, or a checkpoint write fails [none]. It runs on a
    /// dedicated thread of the consumer, one event at a time, in order;
    /// a slow callback delays later events but never lease renewals. It is
    /// not called after [`Consumer::close`] returns. It must not close the
    /// consumer itself.
    pub fn on_event(mut self, callback: impl Fn(&ConsumerEvent) + Send + Sync + 'static) -> Self {
        self.on_event = Some(EventCallback(Arc::new(callback)));
        self
    }

    /// No event callback (undoes [`on_event`](Self::on_event)).
    pub(crate) fn without_events(mut self) -> Self {
        self.on_event = None;
        self
    }

    crate::transport::client_setters!("Kinesis");

    /// Checks the options, prepares the checkpointer (creating its table if
    /// configured), checks that the stream exists, and starts the threads.
    pub fn build(self) -> Result<Consumer> {
        let options = self.options;
        if !(1..=crate::kinesis::MAX_GET_RECORDS_LIMIT).contains(&options.record_limit) {
            return Err(Error::Config(format!(
                "record_limit must be 1 to 10000, got {}",
                options.record_limit
            )));
        }
        if options.max_queue_size == 0 {
            return Err(Error::Config("max_queue_size must be at least 1".into()));
        }
        if let Some(max) = options.idle_poll_max_interval {
            if max < options.idle_poll_interval {
                return Err(Error::Config(format!(
                    "idle_poll_max_interval ({max:?}) must not be shorter than idle_poll_interval ({:?})",
                    options.idle_poll_interval
                )));
            }
        }
        if options.max_shard_consumers == Some(0) {
            return Err(Error::Config(
                "max_shard_consumers must be at least 1".into(),
            ));
        }
        if self.stream.trim().is_empty() {
            return Err(Error::Config("stream_name is empty".into()));
        }
        let config = self.client.resolve()?;
        let kinesis = KinesisClient::new(&config)?;
        let checkpointer = self
            .checkpointer
            .unwrap_or_else(|| Arc::new(MemoryCheckpointer::new()));
        checkpointer.prepare()?;
        let stream = StreamRef::from(self.stream.as_str());
        // Fail fast on a missing stream or missing permissions.
        kinesis.list_shards_page(&stream, None, None)?;

        let settings = checkpointer.settings();
        // The channel carries chunks; together they hold at most
        // max_queue_size records.
        let chunk_size = (options.max_queue_size / 8).clamp(1, 1000);
        let (sender, receiver) =
            crossbeam_channel::bounded((options.max_queue_size / chunk_size).max(1));
        let (shutdown_sender, shutdown) = crossbeam_channel::bounded(0);
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let events = Events::start(self.on_event)
            .map_err(|e| Error::Internal(format!("cannot start the event thread: {e}")))?;
        let context = Arc::new(Context {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            created_in: std::process::id(),
            owner: new_owner_id(),
            scope: LeaseScope {
                group: checkpointer.group().to_owned(),
                stream: stream.name().to_owned(),
            },
            stream,
            checkpointer,
            settings,
            options,
            kinesis,
            counters: ConsumerCounters::default(),
            events,
            chunk_size,
            closing: AtomicBool::new(false),
            sender,
            shutdown,
            wake: crossbeam_channel::bounded(1),
            shards: Mutex::new(HashMap::new()),
            ended: Mutex::new(Vec::new()),
        });
        log::info!("consumer {} starting on {}", context.owner, context.stream);
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(body)
                .map_err(|e| Error::Internal(format!("cannot start the {name} thread: {e}")))
        };
        // The keeper has its own stop signal: its final releases must run
        // after the coordinator has stopped taking leases.
        let (keeper_stop, keeper_stopped) = crossbeam_channel::bounded(1);
        let keeper_context = context.clone();
        let keeper = spawn(
            "kcheck-keeper",
            Box::new(move || keeper::run(keeper_context, keeper_stopped)),
        )?;
        let coordinator_context = context.clone();
        let coordinator = spawn(
            "kcheck-coordinator",
            Box::new(move || coordinator::run(coordinator_context)),
        )?;
        Ok(Consumer {
            context,
            receiver,
            queued: Mutex::new(Queued::default()),
            caller: Mutex::new(CallerState {
                unacknowledged: Vec::new(),
                delivered_from: HashMap::new(),
                last_returned: Instant::now(),
            }),
            threads: Mutex::new(Some(Threads {
                shutdown: shutdown_sender,
                keeper_stop,
                keeper,
                coordinator,
            })),
        })
    }
}

struct Threads {
    shutdown: Sender<()>,
    /// Carries close's deadline to the keeper's final releases.
    keeper_stop: Sender<Instant>,
    keeper: JoinHandle<()>,
    coordinator: JoinHandle<()>,
}

/// What the caller has been given, per tenure.
struct CallerState {
    /// Records returned by the last call, not yet acknowledged.
    unacknowledged: Vec<(Arc<OwnedShard>, Position)>,
    /// Tenures that delivered records to the caller, by shard.
    delivered_from: HashMap<Arc<str>, Arc<OwnedShard>>,
    /// When a record was last returned (or the consumer started): idle_timeout
    /// counts from here.
    last_returned: Instant,
}

/// Records of one tenure inside a batch being gathered.
struct Segment {
    tenure: Arc<OwnedShard>,
    records: Range<usize>,
}

/// What the caller is about to be given from one call, and what must wait
/// until then.
#[derive(Default)]
struct Gathered {
    records: Vec<Record>,
    segments: Vec<Segment>,
    /// Shards whose end was reached: marked only once the records before
    /// the mark are published, so a release never covers less than them.
    ended: Vec<Arc<OwnedShard>>,
}

impl Gathered {
    fn add(&mut self, tenure: &Arc<OwnedShard>, chunk: &mut VecDeque<Record>, count: usize) {
        let start = self.records.len();
        self.records.extend(chunk.drain(..count));
        self.segments.push(Segment {
            tenure: tenure.clone(),
            records: start..self.records.len(),
        });
    }
}

/// The rest of the chunk being handed out, and an error that arrived after
/// records and is reported by the next call.
#[derive(Default)]
struct Queued {
    chunk: Option<(Arc<OwnedShard>, VecDeque<Record>)>,
    error: Option<Error>,
}

/// A Kinesis consumer. `Send + Sync`: one thread may block in `next` while
/// others checkpoint, read stats or close.
pub struct Consumer {
    context: Arc<Context>,
    receiver: Receiver<Item>,
    /// Held by the call handing records out; see [`Queued`].
    queued: Mutex<Queued>,
    caller: Mutex<CallerState>,
    threads: Mutex<Option<Threads>>,
}

impl Consumer {
    /// A builder for `stream` (a name or an ARN).
    pub fn builder(stream: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            stream: stream.into(),
            checkpointer: None,
            options: ConsumerOptions {
                initial_position: IteratorPosition::TrimHorizon,
                record_limit: crate::kinesis::MAX_GET_RECORDS_LIMIT,
                max_queue_size: 10_000,
                max_shard_consumers: None,
                idle_timeout: None,
                checkpoint_interval: Duration::from_secs(5),
                discovery_interval: Duration::from_secs(5),
                idle_poll_interval: Duration::from_secs(1),
                idle_poll_max_interval: None,
            },
            client: ClientSettings::default(),
            on_event: None,
        }
    }

    /// This consumer instance's owner id in the lease table.
    pub fn owner_id(&self) -> &str {
        &self.context.owner
    }

    /// The next record, waiting at most `timeout`; `Ok(None)` on timeout or
    /// once the consumer is closed.
    pub fn next_timeout(&self, timeout: Duration) -> Result<Option<Record>> {
        let mut batch = self.next_batch(1, timeout)?;
        Ok(batch.pop())
    }

    /// Up to `max` records: waits at most `timeout` for the first, then
    /// takes what is already buffered. Acknowledges every record returned
    /// by the previous call (automatic mode).
    pub fn next_batch(&self, max: usize, timeout: Duration) -> Result<Vec<Record>> {
        self.check_process()?;
        let max = max.max(1);
        // Held for the whole call: concurrent callers take turns, and the
        // caller state stays free for checkpoint() and stats().
        let mut queued = self.queued.lock();
        self.acknowledge(&mut self.caller.lock());
        if let Some(error) = queued.error.take() {
            return Err(error);
        }
        let deadline = deadline_after(timeout);
        loop {
            let mut gathered = Gathered::default();
            let error = self.gather(&mut queued, &mut gathered, max, deadline);
            let records = self.publish(gathered);
            match error {
                Some(error) if records.is_empty() => return Err(error),
                // Reported by the next call, after these records.
                Some(error) => queued.error = Some(error),
                None => {}
            }
            // Records of a tenure that ended meanwhile were dropped: wait on
            // for others while there is time.
            if !records.is_empty() || Instant::now() >= deadline || self.is_closed() {
                if !records.is_empty() {
                    self.caller.lock().last_returned = Instant::now();
                }
                return Ok(records);
            }
        }
    }

    /// Takes up to `max` records from the queue, waiting until `deadline`
    /// for the first; stops at an error, which it returns.
    fn gather(
        &self,
        queued: &mut Queued,
        gathered: &mut Gathered,
        max: usize,
        deadline: Instant,
    ) -> Option<Error> {
        while gathered.records.len() < max {
            if let Some((tenure, chunk)) = queued.chunk.as_mut().filter(|(_, c)| !c.is_empty()) {
                let count = (max - gathered.records.len()).min(chunk.len());
                gathered.add(tenure, chunk, count);
                continue;
            }
            let item = if gathered.records.is_empty() {
                self.receive_until(deadline)
            } else {
                self.receiver.try_recv().ok()
            };
            match item {
                None => return None,
                Some(Item::Records(tenure, chunk)) => queued.chunk = Some((tenure, chunk.into())),
                Some(Item::ShardEnd(shard)) => gathered.ended.push(shard),
                Some(Item::Error(error)) => return Some(error),
            }
        }
        None
    }

    /// Hands `gathered` to the caller: each tenure's records count as
    /// delivered, or are dropped when it may no longer deliver (lost, handed
    /// over, closing: the next owner delivers them). Checked under the
    /// progress lock, which releases also take, so a released lease never
    /// covers less than what the caller was given, and a concurrent
    /// checkpoint() never covers records not yet returned.
    fn publish(&self, gathered: Gathered) -> Vec<Record> {
        let Gathered {
            mut records,
            segments,
            ended,
        } = gathered;
        let mut caller = self.caller.lock();
        for segment in segments.into_iter().rev() {
            let tenure = &segment.tenure;
            let Some(last) = records.get(segment.records.end - 1) else {
                continue;
            };
            let position = last.position();
            let mut progress = tenure.progress.lock();
            if self.context.is_closing() || !tenure.may_deliver(&self.context) {
                drop(progress);
                records.drain(segment.records);
                continue;
            }
            if progress.delivered.as_ref().is_none_or(|d| *d < position) {
                progress.delivered = Some(position.clone());
            }
            drop(progress);
            caller.unacknowledged.push((tenure.clone(), position));
            caller
                .delivered_from
                .insert(tenure.shard_id.clone(), tenure.clone());
        }
        for shard in ended {
            // Every record of the shard was published before this.
            let mut progress = shard.progress.lock();
            if shard.is_active() {
                progress.end_reached = true;
            }
        }
        records
    }

    /// Refuses a forked child's copy of the consumer: its records, leases
    /// and connections are the parent's.
    fn check_process(&self) -> Result<()> {
        if std::process::id() == self.context.created_in {
            return Ok(());
        }
        Err(Error::Config(format!(
            "this consumer was created in process {}; create a new consumer after fork",
            self.context.created_in
        )))
    }

    /// Whether the consumer is closed (or closing): no record will come.
    pub fn is_closed(&self) -> bool {
        self.context.is_closing()
    }

    /// Whether `idle_timeout` has passed since the last record was returned
    /// (or since the start): iteration is over.
    pub fn is_idle(&self) -> bool {
        self.idle_remaining()
            .is_some_and(|remaining| remaining.is_zero())
    }

    /// Time left before `idle_timeout` ends iteration (`None`: no timeout).
    pub(crate) fn idle_remaining(&self) -> Option<Duration> {
        let idle = self.context.options.idle_timeout?;
        Some(idle.saturating_sub(self.caller.lock().last_returned.elapsed()))
    }

    fn receive_until(&self, deadline: Instant) -> Option<Item> {
        if self.context.is_closing() {
            return None;
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        crossbeam_channel::select! {
            recv(self.receiver) -> item => item.ok(),
            recv(self.context.shutdown) -> _ => None,
            default(timeout) => None,
        }
    }

    /// Automatic mode: the records returned before are now processed.
    fn acknowledge(&self, caller: &mut CallerState) {
        if !self.context.settings.auto_checkpoint {
            caller.unacknowledged.clear();
            return;
        }
        for (shard, position) in caller.unacknowledged.drain(..) {
            let mut progress = shard.progress.lock();
            if progress.processed.as_ref().is_none_or(|p| *p < position) {
                progress.processed = Some(position);
            }
        }
    }

    /// The next record, blocking until one arrives; `None` once closed or
    /// after `idle_timeout` without a record.
    pub fn next_record(&self) -> Option<Result<Record>> {
        loop {
            let wait = match self.idle_remaining() {
                Some(remaining) if remaining.is_zero() => return None,
                Some(remaining) => remaining,
                None => Duration::from_secs(3600),
            };
            match self.next_timeout(wait) {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) if self.is_closed() => return None,
                Ok(None) => continue,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Checkpoints, for every shard, the last record returned: everything
    /// returned so far is processed. Reports shards whose lease was lost
    /// with [`Error::LeaseLost`] after writing the others.
    pub fn checkpoint(&self) -> Result<()> {
        self.check_process()?;
        let tenures: Vec<Arc<OwnedShard>> = {
            let mut caller = self.caller.lock();
            self.acknowledge(&mut caller);
            caller.delivered_from.values().cloned().collect()
        };
        let mut first_error = None;
        for shard in tenures {
            let delivered = shard.progress.lock().delivered.clone();
            if let Some(position) = delivered {
                if let Err(error) = self.write_checkpoint(&shard, position) {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Whether the consumer checkpoints what it returned by itself
    /// (`auto_checkpoint`), rather than when told to.
    pub fn checkpoints_automatically(&self) -> bool {
        self.context.settings.auto_checkpoint
    }

    /// Checkpoints up to and including `record`.
    pub fn checkpoint_record(&self, record: &Record) -> Result<()> {
        self.check_process()?;
        let not_ours = || {
            Error::InvalidArgument(format!(
                "record {} of shard {} was not returned by this consumer",
                record.position(),
                record.shard_id
            ))
        };
        if record.consumer_id != self.context.id {
            return Err(not_ours());
        }
        let tenure = self
            .caller
            .lock()
            .delivered_from
            .get(&record.shard_id)
            .cloned();
        let Some(tenure) = tenure else {
            return Err(not_ours());
        };
        if tenure.id != record.tenure_id {
            // The shard was lost (or handed over) since; a later tenure
            // started over from the table's checkpoint.
            return Err(Error::LeaseLost {
                shard_id: record.shard_id.to_string(),
            });
        }
        let delivered = tenure.progress.lock().delivered.clone();
        if delivered.as_ref().is_none_or(|d| record.position() > *d) {
            return Err(not_ours());
        }
        self.write_checkpoint(&tenure, record.position())
    }

    fn write_checkpoint(&self, shard: &Arc<OwnedShard>, position: Position) -> Result<()> {
        match shard.state() {
            TenureState::Lost => return Err(shard.lost_error()),
            TenureState::Released => {
                // Handed over or finished: fine if the stored checkpoint
                // already covers the position, otherwise the lease is gone.
                let progress = shard.progress.lock();
                let covered = progress
                    .checkpointed
                    .as_ref()
                    .is_some_and(|c| c.covers(&position));
                return if covered {
                    Ok(())
                } else {
                    Err(shard.lost_error())
                };
            }
            TenureState::Active | TenureState::HandingOver => {}
        }
        {
            let mut progress = shard.progress.lock();
            if progress.processed.as_ref().is_none_or(|p| *p < position) {
                progress.processed = Some(position.clone());
            }
        }
        shard.write_checkpoint(&self.context, Duration::MAX, Checkpoint::At(position))
    }

    /// Figures per shard and for the whole consumer.
    pub fn stats(&self) -> ConsumerStats {
        stats::collect(&self.context)
    }

    /// Stops every thread, writes the final checkpoints (automatic mode),
    /// releases the leases, and joins. Idempotent. Returns within about
    /// session_timeout plus [`CLOSE_GRACE`] even while Kinesis or DynamoDB
    /// hang: a thread still inside a call then is left to end by itself
    /// (it delivers nothing more).
    pub fn close(&self) -> Result<()> {
        // Held for the whole close: a concurrent close returns only once the
        // leases are released.
        let mut running = self.threads.lock();
        let Some(threads) = running.take() else {
            return Ok(());
        };
        if let Err(error) = self.check_process() {
            // A forked child's copy: the threads are the parent's, and so
            // are the leases. Leave both alone.
            std::mem::forget(threads);
            return Err(error);
        }
        log::info!("consumer {} closing", self.context.owner);
        let deadline = Instant::now() + self.context.settings.session_timeout;
        self.context.closing.store(true, Ordering::Release);
        drop(threads.shutdown);
        // A lease the coordinator takes from now on it releases at once.
        let _ = threads.keeper_stop.send(deadline);
        let grace = deadline + CLOSE_GRACE;
        let released = wait_until(grace, || threads.keeper.is_finished());
        // Fetchers stop on `closing` once their current call returns.
        wait_until(grace, || {
            self.context
                .all_tenures()
                .iter()
                .all(|shard| join_if_finished(shard))
        });
        if wait_until(grace, || threads.coordinator.is_finished()) {
            let _ = threads.coordinator.join();
        }
        while self.receiver.try_recv().is_ok() {}
        // Events queued so far are told; none after this.
        self.context.events.stop();
        if !released {
            return Err(Error::Timeout(format!(
                "close: leases were still being released after {:?}",
                self.context.settings.session_timeout + CLOSE_GRACE
            )));
        }
        threads
            .keeper
            .join()
            .map_err(|_| Error::Internal("the lease keeper thread panicked".into()))
    }
}

/// How long close waits beyond session_timeout for threads to finish.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("owner", &self.context.owner)
            .field("stream", &self.context.stream)
            .field("checkpointer", &self.context.checkpointer)
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Iterates records until the consumer closes or `idle_timeout` passes.
pub struct Records<'a> {
    consumer: &'a Consumer,
}

impl Iterator for Records<'_> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.consumer.next_record()
    }
}

impl<'a> IntoIterator for &'a Consumer {
    type Item = Result<Record>;
    type IntoIter = Records<'a>;

    fn into_iter(self) -> Records<'a> {
        Records { consumer: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn consumer_is_send_and_sync() {
        assert_send_sync::<Consumer>();
        assert_send_sync::<Record>();
    }
}
