//! A worker thread: takes a batch, waits for its table's write units,
//! sends it, and sorts what came back into written, retried and failed.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::queue::{Batch, Outcome, Pending, Shared};
use crate::dynamodb::{BatchWriteItemRequest, DynamoDbClient, Item, WriteRequest};
use crate::error::{panic_message, Error, ErrorCode, Result};
use crate::transport::RetryPolicy;

/// Starts `count` workers.
pub(crate) fn start(
    shared: &Arc<Shared>,
    client: &DynamoDbClient,
    backoff: RetryPolicy,
    count: usize,
) -> Result<Vec<JoinHandle<()>>> {
    let mut workers = Vec::with_capacity(count);
    for number in 0..count {
        let own = Arc::clone(shared);
        let client = client.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kcheck-writer-{number}"))
            .spawn(move || {
                let run = AssertUnwindSafe(|| {
                    while let Some(batch) = own.next_batch() {
                        let table = batch.table;
                        own.finish(table, send(&client, batch), &backoff);
                    }
                });
                if let Err(panic) = std::panic::catch_unwind(run) {
                    let message = panic_message(&*panic);
                    log::error!("a writer thread panicked: {message}");
                    own.stop(Error::Internal(format!(
                        "a writer thread panicked: {message}"
                    )));
                }
            });
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                shared.stop(Error::Internal(format!(
                    "cannot start a writer thread: {e}"
                )));
                return Err(Error::Internal(format!(
                    "cannot start a writer thread: {e}"
                )));
            }
        }
    }
    Ok(workers)
}

/// Sends one batch, paced by its table's bucket.
fn send(client: &DynamoDbClient, mut batch: Batch) -> Outcome {
    let units = batch.units();
    if let Some(bucket) = &batch.bucket {
        bucket.acquire(units, None);
    }
    // The requests travel in the call and come back after it: no copies.
    let requests: Vec<WriteRequest> = batch
        .writes
        .iter_mut()
        .map(|write| std::mem::replace(&mut write.request, WriteRequest::delete(Item::new())))
        .collect();
    let mut request = BatchWriteItemRequest::new(batch.name.as_ref(), requests).consumed_capacity();
    let answer = client.batch_write_item_once(&request);
    let requests = request
        .request_items
        .remove(batch.name.as_ref())
        .unwrap_or_default();
    for (write, request) in batch.writes.iter_mut().zip(requests) {
        write.request = request;
    }
    let refund = |units: f64| {
        if let Some(bucket) = &batch.bucket {
            bucket.take(-units);
        }
    };
    match answer {
        Ok(output) => {
            let unprocessed: HashSet<Vec<u8>> = output
                .unprocessed_items
                .into_values()
                .flatten()
                .filter_map(|request| batch.schema.weigh(&batch.name, &request).ok())
                .map(|weighed| weighed.key)
                .collect();
            let (retry, written): (Vec<Pending>, Vec<Pending>) = batch
                .writes
                .into_iter()
                .partition(|write| unprocessed.contains(&write.key));
            let estimated: f64 = written.iter().map(|write| write.units).sum();
            let consumed: Option<f64> = output
                .consumed_capacity
                .iter()
                .map(|capacity| capacity.capacity_units)
                .sum();
            let consumed = consumed.filter(|_| !output.consumed_capacity.is_empty());
            // The bucket was charged the estimate for every write; settle
            // it to what was consumed, so retries are not paid twice.
            refund(units - consumed.unwrap_or(estimated));
            Outcome {
                units: consumed.unwrap_or(estimated),
                throttled: !retry.is_empty(),
                back_off: !retry.is_empty(),
                written,
                retry,
                failed: Vec::new(),
            }
        }
        Err(error) if error.is_retryable() => {
            refund(units);
            log::debug!(
                "BatchWriteItem to {}: {} writes to retry: {error}",
                batch.name,
                batch.writes.len()
            );
            Outcome {
                throttled: error.is_throttling(),
                back_off: true,
                ..retry_all(batch.writes)
            }
        }
        Err(error) if error.code() == Some(&ErrorCode::Validation) && batch.writes.len() > 1 => {
            // One bad item fails the whole batch; alone, each names itself.
            refund(units);
            let mut outcome = retry_all(batch.writes);
            for write in &mut outcome.retry {
                write.alone = true;
            }
            outcome
        }
        Err(error) => {
            refund(units);
            Outcome {
                failed: batch
                    .writes
                    .into_iter()
                    .map(|write| (write, error.clone()))
                    .collect(),
                ..retry_all(Vec::new())
            }
        }
    }
}

fn retry_all(writes: Vec<Pending>) -> Outcome {
    Outcome {
        written: Vec::new(),
        units: 0.0,
        retry: writes,
        throttled: false,
        back_off: false,
        failed: Vec::new(),
    }
}
