//! Tickets: the numbers the producer and the writer hand out for each thing
//! put, and the ledger of which are settled, which failed for good and
//! which of those failures a flush has already reported; plus the waits of
//! `put` (for room) and `flush` (for settled tickets) both share.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Instant;

use parking_lot::{Condvar, MutexGuard};

use crate::error::{Error, ErrorCode, Result};

/// Identifies a put record or write: increasing from 0 in put order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket as a number (for logs and foreign callers).
    pub fn get(self) -> u64 {
        self.0
    }

    /// The ticket with this number.
    pub fn from_u64(value: u64) -> Ticket {
        Ticket(value)
    }
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where a put record or write stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// Queued, in flight or waiting to be resubmitted.
    Pending,
    /// Stored by the service (Kinesis, or DynamoDB for a writer).
    Accepted,
    /// Failed for good; `take_failures` has it.
    Failed,
}

/// What the ledger keeps of a failure.
pub(crate) trait Failure {
    fn ticket(&self) -> Ticket;
    fn error(&self) -> &Error;
    /// What failed, for the report (e.g. the table and item).
    fn subject(&self) -> Option<String> {
        None
    }
}

/// What a ledger's reports call their owner and its things.
pub(crate) struct Vocabulary {
    /// The owner, e.g. `producer`.
    pub owner: &'static str,
    /// The call the failures came from, e.g. `PutRecords`.
    pub operation: &'static str,
    /// The things ticketed, plural, e.g. `records`.
    pub things: &'static str,
    /// Where the failures can be had, e.g. `Producer::take_failures`.
    pub taken_by: &'static str,
}

/// The tickets of one producer or writer. Not locked itself: it lives
/// inside its owner's state, under the owner's lock.
pub(crate) struct Ledger<F> {
    next: u64,
    /// Every ticket below this is settled.
    settled_below: u64,
    /// Whether each ticket from `settled_below` on is settled.
    settled_flags: VecDeque<bool>,
    /// Issued and not yet settled.
    outstanding: usize,
    /// Failures not yet taken.
    failures: BTreeMap<u64, F>,
    /// Failed tickets no flush has reported yet.
    unreported: BTreeSet<u64>,
    /// Every failed ticket, for `status`.
    failed: HashSet<u64>,
    /// The lowest of them.
    first_failed: Option<u64>,
    /// Puts waiting for room and flushes waiting for tickets: the sending
    /// side hurries while any wait.
    waiting_puts: usize,
    waiting_flushes: usize,
    closed: bool,
    /// Why the sending side stopped early.
    stopped: Option<Error>,
}

impl<F> Default for Ledger<F> {
    fn default() -> Self {
        Ledger {
            next: 0,
            settled_below: 0,
            settled_flags: VecDeque::new(),
            outstanding: 0,
            failures: BTreeMap::new(),
            unreported: BTreeSet::new(),
            failed: HashSet::new(),
            first_failed: None,
            waiting_puts: 0,
            waiting_flushes: 0,
            closed: false,
            stopped: None,
        }
    }
}

impl<F: Failure> Ledger<F> {
    /// The next ticket, pending until settled.
    pub fn issue(&mut self) -> Ticket {
        let ticket = Ticket(self.next);
        self.next += 1;
        self.settled_flags.push_back(false);
        self.outstanding += 1;
        ticket
    }

    /// Refuses further puts.
    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The sending side stopped early: waits end with `error`.
    pub fn stop(&mut self, error: Error) {
        self.stopped = Some(error);
    }

    pub fn stopped(&self) -> Option<&Error> {
        self.stopped.as_ref()
    }

    /// Whether anyone waits for the sending side (or nothing more comes):
    /// send without waiting for fuller batches.
    pub fn hurry(&self) -> bool {
        self.waiting_puts > 0 || self.waiting_flushes > 0 || self.closed
    }

    fn usable(&self, words: &Vocabulary) -> Result<()> {
        if let Some(error) = &self.stopped {
            return Err(error.clone());
        }
        if self.closed {
            return Err(Error::InvalidArgument(format!(
                "the {} is closed",
                words.owner
            )));
        }
        Ok(())
    }

    /// The ticket the next `issue` returns: every earlier one is issued.
    pub fn next(&self) -> Ticket {
        Ticket(self.next)
    }

    /// Tickets issued and not yet settled.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Tickets that failed for good.
    pub fn failed_count(&self) -> u64 {
        self.failed.len() as u64
    }

    /// The lowest ticket not settled yet (`next` when all are).
    pub fn first_unsettled(&self) -> Ticket {
        Ticket(self.settled_below)
    }

    /// The lowest ticket not settled, or failed: every one below it
    /// succeeded.
    pub fn first_unsuccessful(&self) -> Ticket {
        Ticket(
            self.first_failed
                .map_or(self.settled_below, |failed| failed.min(self.settled_below)),
        )
    }

    /// How many tickets below `end` are not settled.
    pub fn unsettled_before(&self, end: Ticket) -> usize {
        (self.settled_below..end.0)
            .filter(|&t| !self.is_settled(t))
            .count()
    }

    /// Marks `ticket` done.
    pub fn settle(&mut self, ticket: Ticket) {
        let index = ticket.0.wrapping_sub(self.settled_below) as usize;
        match self.settled_flags.get_mut(index) {
            Some(flag) if !*flag => *flag = true,
            _ => return,
        }
        while self.settled_flags.front() == Some(&true) {
            self.settled_flags.pop_front();
            self.settled_below += 1;
        }
        self.outstanding -= 1;
    }

    /// Settles the failure's ticket as failed for good.
    pub fn fail(&mut self, failure: F) {
        let ticket = failure.ticket();
        self.settle(ticket);
        self.unreported.insert(ticket.0);
        self.failed.insert(ticket.0);
        self.first_failed = Some(self.first_failed.map_or(ticket.0, |t| t.min(ticket.0)));
        self.failures.insert(ticket.0, failure);
    }

    pub fn status(&self, ticket: Ticket, issuer: &str) -> Result<RecordStatus> {
        if ticket.0 >= self.next {
            return Err(Error::InvalidArgument(format!(
                "ticket {ticket} was never issued by this {issuer}"
            )));
        }
        Ok(if self.failed.contains(&ticket.0) {
            RecordStatus::Failed
        } else if self.is_settled(ticket.0) {
            RecordStatus::Accepted
        } else {
            RecordStatus::Pending
        })
    }

    /// The failures not taken yet, in ticket order; no flush reports them
    /// afterwards.
    pub fn take_failures(&mut self) -> Vec<F> {
        self.unreported.clear();
        std::mem::take(&mut self.failures).into_values().collect()
    }

    /// An error naming the failures below `end` that no earlier report
    /// named (how many, which, the first cause); those count as reported.
    pub fn report_failures(&mut self, end: Ticket, words: &Vocabulary) -> Result<()> {
        let failed: Vec<u64> = self.unreported.range(..end.0).copied().collect();
        let Some(first) = failed.first() else {
            return Ok(());
        };
        for ticket in &failed {
            self.unreported.remove(ticket);
        }
        const NAMED: usize = 20;
        let mut tickets: Vec<String> = failed.iter().take(NAMED).map(u64::to_string).collect();
        if failed.len() > NAMED {
            tickets.push(format!("and {} more", failed.len() - NAMED));
        }
        let failure = &self.failures[first];
        let cause = failure.error();
        let subject = failure
            .subject()
            .map_or(String::new(), |subject| format!(" ({subject})"));
        let message = format!(
            "{} {} failed for good (tickets {}; {} has them); the first{subject}: {cause}",
            failed.len(),
            words.things,
            tickets.join(", "),
            words.taken_by,
        );
        let (code, status) = match cause {
            Error::Service { code, status, .. } => (code.clone(), *status),
            _ => (ErrorCode::Other("RecordsFailed".into()), 0),
        };
        Err(Error::Service {
            operation: words.operation,
            code,
            status,
            message,
        })
    }

    fn is_settled(&self, ticket: u64) -> bool {
        ticket < self.settled_below
            || self
                .settled_flags
                .get((ticket - self.settled_below) as usize)
                .copied()
                .unwrap_or(false)
    }
}

/// Where a producer's or writer's state keeps its ledger.
pub(crate) type LedgerOf<S, F> = fn(&mut S) -> &mut Ledger<F>;

/// For `put`: waits under `state` until fewer than `limit` tickets are
/// outstanding (until `deadline`, if any), then checks the owner still
/// takes puts. `nudge` tells the sending side that a put waits.
pub(crate) fn wait_for_room<S, F: Failure>(
    state: &mut MutexGuard<'_, S>,
    ledger: LedgerOf<S, F>,
    room: &Condvar,
    limit: usize,
    deadline: Option<Instant>,
    words: &Vocabulary,
    nudge: impl Fn(&mut S),
) -> Result<()> {
    while ledger(state).outstanding() >= limit {
        ledger(state).usable(words)?;
        ledger(state).waiting_puts += 1;
        nudge(state);
        let timed_out = wait(state, room, deadline);
        ledger(state).waiting_puts -= 1;
        let outstanding = ledger(state).outstanding();
        if timed_out && outstanding >= limit {
            return Err(Error::Timeout(format!(
                "the {}'s queue stayed full ({outstanding} {})",
                words.owner, words.things
            )));
        }
    }
    ledger(state).usable(words)
}

/// For `flush`: waits under `state` until every ticket issued so far is
/// settled (or `deadline`); then an error names those among them that
/// failed for good and no flush reported yet. `nudge` tells the sending
/// side that a flush waits.
pub(crate) fn wait_until_settled<S, F: Failure>(
    state: &mut MutexGuard<'_, S>,
    ledger: LedgerOf<S, F>,
    settled: &Condvar,
    deadline: Option<Instant>,
    words: &Vocabulary,
    nudge: impl Fn(&mut S),
) -> Result<()> {
    let target = ledger(state).next();
    ledger(state).waiting_flushes += 1;
    nudge(state);
    let mut timed_out = false;
    while ledger(state).first_unsettled() < target && ledger(state).stopped.is_none() && !timed_out
    {
        timed_out = wait(state, settled, deadline);
    }
    let ledger = ledger(state);
    ledger.waiting_flushes -= 1;
    if let Some(error) = &ledger.stopped {
        return Err(error.clone());
    }
    if ledger.first_unsettled() < target {
        return Err(Error::Timeout(format!(
            "{} {} put before the flush are not settled yet",
            ledger.unsettled_before(target),
            words.things
        )));
    }
    ledger.report_failures(target, words)
}

/// One wait on `condvar`; whether it ended at the deadline.
fn wait<S>(state: &mut MutexGuard<'_, S>, condvar: &Condvar, deadline: Option<Instant>) -> bool {
    match deadline {
        Some(deadline) => condvar.wait_until(state, deadline).timed_out(),
        None => {
            condvar.wait(state);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failed(Ticket, Error);

    impl Failure for Failed {
        fn ticket(&self) -> Ticket {
            self.0
        }
        fn error(&self) -> &Error {
            &self.1
        }
    }

    const WORDS: Vocabulary = Vocabulary {
        owner: "test",
        operation: "Test",
        things: "things",
        taken_by: "Test::take_failures",
    };

    #[test]
    fn tickets_settle_out_of_order_and_the_watermark_follows() {
        let mut ledger = Ledger::<Failed>::default();
        let tickets: Vec<Ticket> = (0..4).map(|_| ledger.issue()).collect();
        ledger.settle(tickets[2]);
        ledger.settle(tickets[2]);
        assert_eq!(ledger.outstanding(), 3);
        assert_eq!(ledger.first_unsettled(), tickets[0]);
        ledger.settle(tickets[0]);
        ledger.settle(tickets[1]);
        assert_eq!(ledger.first_unsettled(), tickets[3]);
        assert_eq!(ledger.unsettled_before(ledger.next()), 1);
        assert_eq!(
            ledger.status(tickets[2], "test").unwrap(),
            RecordStatus::Accepted
        );
        assert_eq!(
            ledger.status(tickets[3], "test").unwrap(),
            RecordStatus::Pending
        );
        assert!(ledger.status(Ticket(9), "test").is_err());
    }

    #[test]
    fn failures_are_reported_once_and_kept_until_taken() {
        let mut ledger = Ledger::<Failed>::default();
        let first = ledger.issue();
        let second = ledger.issue();
        ledger.fail(Failed(second, Error::InvalidArgument("bad".into())));
        assert_eq!(ledger.first_unsuccessful(), first);
        ledger.settle(first);
        assert_eq!(ledger.first_unsuccessful(), second);
        assert_eq!(ledger.first_unsettled(), ledger.next());
        let error = ledger.report_failures(ledger.next(), &WORDS).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("1 things failed for good (tickets 1;"),
            "{error}"
        );
        assert!(ledger.report_failures(ledger.next(), &WORDS).is_ok());
        assert_eq!(ledger.status(second, "test").unwrap(), RecordStatus::Failed);
        assert_eq!(ledger.take_failures().len(), 1);
        assert!(ledger.take_failures().is_empty());
    }
}
