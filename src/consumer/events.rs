//! Lease and checkpoint events told to a host callback the moment they
//! happen (see [`ConsumerBuilder::on_event`](super::ConsumerBuilder::on_event)).
//!
//! The consumer's threads only queue an event (never blocking, never
//! calling host code under a lock); one dispatcher thread per consumer
//! calls the callback, in order. A slow callback delays later events, not
//! lease renewals. No call starts after `Consumer::close` returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

/// What happened to a shard's lease or checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsumerEventKind {
    /// A free or expired lease was taken.
    LeaseGained,
    /// A lease was lost (taken by another consumer, or not renewed in
    /// time): its undelivered records are dropped, another owner resumes
    /// from the stored checkpoint.
    LeaseLost,
    /// Another consumer handed a lease over to this one.
    LeaseReceived,
    /// This consumer handed a lease over to the consumer that asked for it
    /// (`message` names it).
    LeaseHandedOver,
    /// A checkpoint write failed (`message` says why).
    CheckpointFailed,
}

impl ConsumerEventKind {
    /// A stable lower-case name, e.g. `lease_lost`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerEventKind::LeaseGained => "lease_gained",
            ConsumerEventKind::LeaseLost => "lease_lost",
            ConsumerEventKind::LeaseReceived => "lease_received",
            ConsumerEventKind::LeaseHandedOver => "lease_handed_over",
            ConsumerEventKind::CheckpointFailed => "checkpoint_failed",
        }
    }
}

impl std::fmt::Display for ConsumerEventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lease or checkpoint event of one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerEvent {
    pub kind: ConsumerEventKind,
    /// The checkpointer's group (application name).
    pub group: String,
    pub stream: String,
    pub shard_id: String,
    /// This consumer's owner id.
    pub owner: String,
    /// The error or reason (`CheckpointFailed`, `LeaseLost`), the asker
    /// (`LeaseHandedOver`), or the previous owner (`LeaseGained` of an
    /// expired lease); empty otherwise.
    pub message: String,
}

/// The host's callback, shared by the builder's clones.
#[derive(Clone)]
pub(crate) struct EventCallback(pub Arc<dyn Fn(&ConsumerEvent) + Send + Sync>);

impl std::fmt::Debug for EventCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventCallback")
    }
}

/// The consumer's side of the event queue.
pub(crate) struct Events {
    sender: Option<Sender<Option<ConsumerEvent>>>,
    stopped: AtomicBool,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Events {
    /// No callback: events are dropped at once.
    pub fn none() -> Events {
        Events {
            sender: None,
            stopped: AtomicBool::new(true),
            dispatcher: Mutex::new(None),
        }
    }

    /// Starts the dispatcher thread of `callback`.
    pub fn start(callback: Option<EventCallback>) -> std::io::Result<Events> {
        let Some(callback) = callback else {
            return Ok(Events::none());
        };
        let (sender, receiver) = crossbeam_channel::unbounded();
        let dispatcher = std::thread::Builder::new()
            .name("kcheck-events".to_owned())
            .spawn(move || dispatch(&receiver, &callback))?;
        Ok(Events {
            sender: Some(sender),
            stopped: AtomicBool::new(false),
            dispatcher: Mutex::new(Some(dispatcher)),
        })
    }

    /// Queues an event; never blocks. Dropped once stopped.
    pub fn emit(&self, event: impl FnOnce() -> ConsumerEvent) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        if let Some(sender) = &self.sender {
            let _ = sender.send(Some(event()));
        }
    }

    /// Delivers what is queued, then stops the dispatcher and waits for it
    /// (unless called from the callback itself). Idempotent.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(sender) = &self.sender {
            let _ = sender.send(None);
        }
        let handle = self.dispatcher.lock().take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn dispatch(receiver: &Receiver<Option<ConsumerEvent>>, callback: &EventCallback) {
    while let Ok(Some(event)) = receiver.recv() {
        // A panicking callback loses its event, not the ones after it.
        let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (callback.0)(&event)));
        if let Err(panic) = call {
            log::error!(
                "event callback panicked on {} of shard {}: {}",
                event.kind,
                event.shard_id,
                crate::error::panic_message(&*panic)
            );
        }
    }
}
