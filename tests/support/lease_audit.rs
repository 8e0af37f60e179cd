//! The audit of a consumer group's run: a producer that keeps writing, a
//! capturing logger for the consumer's lease-gain lines, readers that stamp
//! every delivery, and the check that every delivery came from the consumer
//! that gained the shard's lease last.
//!
//! The consumer logs every gain as `"{owner}: lease taken: shard {shard}"` or
//! `"{owner}: lease received: shard {shard}"`; owner ids (`host:pid:hex`)
//! contain ':', so lines are split on `": lease "`.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kcheck::kinesis::{KinesisClient, StreamRef};
use kcheck::Consumer;

/// Writes `payload-{i}` records in batches on its own thread, so owners
/// always have something in flight when a fault strikes.
pub struct Producer {
    written: Arc<Mutex<Vec<String>>>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Producer {
    /// Writes `batch` records every `pause`, `total` records at most.
    pub fn start(
        kinesis: KinesisClient,
        stream: StreamRef,
        batch: usize,
        pause: Duration,
        total: usize,
    ) -> Producer {
        let written = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let (all, go_on) = (written.clone(), running.clone());
        let thread = thread::spawn(move || {
            let mut next = 0;
            while next < total && go_on.load(Ordering::SeqCst) {
                let end = (next + batch).min(total);
                let payloads = crate::support::put_payloads(&kinesis, &stream, next..end);
                all.lock().unwrap().extend(payloads);
                next = end;
                thread::sleep(pause);
            }
        });
        Producer {
            written,
            running,
            thread: Some(thread),
        }
    }

    /// Every record written so far.
    pub fn written(&self) -> Vec<String> {
        self.written.lock().unwrap().clone()
    }

    /// Waits until all `total` records are written; every record written.
    pub fn finish(mut self) -> Vec<String> {
        self.join()
    }

    /// Stops writing; every record written.
    pub fn stop(mut self) -> Vec<String> {
        self.running.store(false, Ordering::SeqCst);
        self.join()
    }

    fn join(&mut self) -> Vec<String> {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("producer thread");
        }
        self.written()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join(); // dropped unjoined: the test is failing already
        }
    }
}

/// Something an owner did to a shard at a time: a lease gain or a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardEvent<T> {
    pub at: T,
    pub owner: String,
    pub shard: String,
}

impl ShardEvent<Instant> {
    /// The same event timed from `start`, for readable reports.
    pub fn since(&self, start: Instant) -> ShardEvent<Duration> {
        ShardEvent {
            at: self.at.saturating_duration_since(start),
            owner: self.owner.clone(),
            shard: self.shard.clone(),
        }
    }
}

/// The lease gains logged in this process.
pub struct LeaseLog {
    gains: Mutex<Vec<ShardEvent<Instant>>>,
    /// Child processes also write each gain as `G {wall_ms} {owner} {shard}`.
    mirror: OnceLock<Mutex<File>>,
}

impl LeaseLog {
    /// Every gain so far, in log order.
    pub fn gains(&self) -> Vec<ShardEvent<Instant>> {
        self.gains.lock().unwrap().clone()
    }

    /// Also appends each gain from now on to `file`, one line each, written
    /// at once so a killed process loses none.
    pub fn mirror_to(&self, file: File) {
        let _ = self.mirror.set(Mutex::new(file));
    }
}

impl log::Log for LeaseLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        let message = record.args().to_string();
        let Some((owner, shard)) = parse_gain(&message) else {
            return;
        };
        let gain = ShardEvent {
            at: Instant::now(),
            owner: owner.to_owned(),
            shard: shard.to_owned(),
        };
        if let Some(file) = self.mirror.get() {
            let line = format!("G {} {} {}\n", wall_ms(), gain.owner, gain.shard);
            let _ = file.lock().unwrap().write_all(line.as_bytes());
        }
        self.gains.lock().unwrap().push(gain);
    }

    fn flush(&self) {}
}

/// The lease log of this process, installed as the `log` logger on first use.
pub fn lease_log() -> &'static LeaseLog {
    static LOG: OnceLock<&'static LeaseLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: &'static LeaseLog = Box::leak(Box::new(LeaseLog {
            gains: Mutex::new(Vec::new()),
            mirror: OnceLock::new(),
        }));
        log::set_logger(log).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
        log
    })
}

/// `(owner, shard)` of a lease-gain line.
pub fn parse_gain(message: &str) -> Option<(&str, &str)> {
    let (owner, rest) = message.split_once(": lease ")?;
    let shard = rest
        .strip_prefix("taken: shard ")
        .or_else(|| rest.strip_prefix("received: shard "))?;
    // "taken: shard X from expired Y" names the shard first.
    Some((owner, shard.split_whitespace().next()?))
}

/// Milliseconds since the epoch: the clock processes share.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Deliveries made while the deliverer was not the shard's latest lease
/// gainer, described one line per owner, shard and latest gain; empty when
/// every delivery was covered by its own gain. A gain at the very same
/// instant as a delivery does not count as before it.
pub fn deliveries_without_lease<T: Ord + Copy + Debug>(
    deliveries: &[ShardEvent<T>],
    gains: &[ShardEvent<T>],
) -> Vec<String> {
    let mut gains_by_shard: HashMap<&str, Vec<&ShardEvent<T>>> = HashMap::new();
    for gain in gains {
        gains_by_shard.entry(&gain.shard).or_default().push(gain);
    }
    for shard_gains in gains_by_shard.values_mut() {
        shard_gains.sort_by_key(|g| g.at);
    }
    let mut overlaps: Vec<Overlap<T>> = Vec::new();
    for delivery in deliveries {
        let shard_gains = gains_by_shard
            .get(delivery.shard.as_str())
            .map_or(&[][..], Vec::as_slice);
        let before = shard_gains.partition_point(|g| g.at < delivery.at);
        let holder = before.checked_sub(1).map(|i| shard_gains[i]);
        if holder.is_some_and(|gain| gain.owner == delivery.owner) {
            continue;
        }
        let same = |o: &&mut Overlap<T>| {
            o.owner == delivery.owner && o.shard == delivery.shard && o.holder == holder
        };
        match overlaps.iter_mut().find(same) {
            Some(overlap) => {
                overlap.count += 1;
                overlap.last = delivery.at;
            }
            None => overlaps.push(Overlap {
                owner: &delivery.owner,
                shard: &delivery.shard,
                holder,
                count: 1,
                first: delivery.at,
                last: delivery.at,
            }),
        }
    }
    overlaps.iter().map(Overlap::describe).collect()
}

/// Deliveries of one owner and shard while another held the latest gain.
struct Overlap<'a, T> {
    owner: &'a str,
    shard: &'a str,
    /// The latest gain before them, if any.
    holder: Option<&'a ShardEvent<T>>,
    count: usize,
    first: T,
    last: T,
}

impl<T: Debug> Overlap<'_, T> {
    fn describe(&self) -> String {
        let why = match self.holder {
            Some(gain) => format!("{} gained it at {:?}", gain.owner, gain.at),
            None => "no gain of it was logged before".to_owned(),
        };
        format!(
            "{} delivered {} records of {} from {:?} to {:?} but {why}",
            self.owner, self.count, self.shard, self.first, self.last
        )
    }
}

/// A record as a consumer handed it out.
pub struct Delivery {
    pub event: ShardEvent<Instant>,
    pub payload: String,
}

/// What the readers of one scenario saw.
#[derive(Default)]
pub struct Observed {
    pub deliveries: Mutex<Vec<Delivery>>,
    /// Errors the consumers returned, with the owner.
    pub errors: Mutex<Vec<String>>,
}

/// A consumer and the thread reading it, which stamps every delivery.
pub struct Reader {
    pub consumer: Arc<Consumer>,
    stop: Arc<AtomicBool>,
    pub stalled_until: Arc<Mutex<Option<Instant>>>,
    thread: JoinHandle<()>,
}

impl Reader {
    pub fn start(consumer: Consumer, observed: &Arc<Observed>) -> Reader {
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let stalled_until = Arc::new(Mutex::new(None::<Instant>));
        let (reading, stopping, stalled, seen) = (
            consumer.clone(),
            stop.clone(),
            stalled_until.clone(),
            observed.clone(),
        );
        let thread = thread::spawn(move || {
            let owner = reading.owner_id().to_owned();
            while !stopping.load(Ordering::SeqCst) {
                // A stalled caller is still "processing" what it was given.
                if stalled
                    .lock()
                    .unwrap()
                    .is_some_and(|until| Instant::now() < until)
                {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                }
                match reading.next_batch(100, Duration::from_millis(100)) {
                    Ok(records) => {
                        let at = Instant::now();
                        let mut deliveries = seen.deliveries.lock().unwrap();
                        deliveries.extend(records.into_iter().map(|record| Delivery {
                            event: ShardEvent {
                                at,
                                owner: owner.clone(),
                                shard: record.shard_id.to_string(),
                            },
                            payload: String::from_utf8_lossy(&record.data).into_owned(),
                        }));
                    }
                    Err(error) => {
                        seen.errors
                            .lock()
                            .unwrap()
                            .push(format!("{owner}: {error}"));
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
        Reader {
            consumer,
            stop,
            stalled_until,
            thread,
        }
    }

    pub fn stall(&self, duration: Duration) {
        *self.stalled_until.lock().unwrap() = Some(Instant::now() + duration);
    }

    /// Stops reading and hands back the consumer, which nothing else holds.
    pub fn stop(self) -> Consumer {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("reader thread");
        Arc::into_inner(self.consumer).expect("the reader let go of the consumer")
    }
}
