//! Leases and checkpoints in process memory: the default checkpointer, and a
//! way for several consumers in one process to share a stream.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Checkpoint, Checkpointer, Lease, LeaseScope, LeaseSettings};
use crate::error::{Error, Result};
use crate::kinesis::IteratorPosition;

/// An in-process checkpointer. Clones share the same leases.
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpointer {
    settings: LeaseSettings,
    leases: Arc<Mutex<HashMap<String, Lease>>>,
}

impl MemoryCheckpointer {
    /// A checkpointer with the default lease timing and automatic checkpoints.
    pub fn new() -> MemoryCheckpointer {
        MemoryCheckpointer::default()
    }

    /// The same store with other lease timing or checkpoint mode.
    pub fn with_settings(settings: LeaseSettings) -> Result<MemoryCheckpointer> {
        settings.validate()?;
        Ok(MemoryCheckpointer {
            settings,
            leases: Arc::default(),
        })
    }

    /// Applies `change` to the owned lease if it is still `expected`.
    fn update_owned(
        &self,
        scope: &LeaseScope,
        expected: &Lease,
        change: impl FnOnce(&mut Lease),
    ) -> Result<Lease> {
        let mut leases = self.leases.lock();
        let lost = || Error::LeaseLost {
            shard_id: expected.shard_id.clone(),
        };
        let lease = leases
            .get_mut(&scope.key(&expected.shard_id))
            .ok_or_else(lost)?;
        if lease.counter != expected.counter
            || lease.owner != expected.owner
            || lease.owner.is_none()
        {
            return Err(lost());
        }
        change(lease);
        lease.counter += 1;
        Ok(lease.clone())
    }
}

impl Checkpointer for MemoryCheckpointer {
    fn group(&self) -> &str {
        "memory"
    }

    fn settings(&self) -> LeaseSettings {
        self.settings
    }

    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    fn leases(&self, scope: &LeaseScope) -> Result<Vec<Lease>> {
        let prefix = scope.key("");
        Ok(self
            .leases
            .lock()
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(_, lease)| lease.clone())
            .collect())
    }

    fn lease(&self, scope: &LeaseScope, shard_id: &str) -> Result<Option<Lease>> {
        Ok(self.leases.lock().get(&scope.key(shard_id)).cloned())
    }

    fn create_lease(&self, scope: &LeaseScope, shard_id: &str, parents: &[String]) -> Result<()> {
        self.leases
            .lock()
            .entry(scope.key(shard_id))
            .or_insert_with(|| Lease {
                shard_id: shard_id.to_owned(),
                owner: None,
                counter: 0,
                checkpoint: None,
                parents: parents.to_vec(),
                handoff_to: None,
                start: None,
                expires_at: None,
            });
        Ok(())
    }

    fn take(
        &self,
        scope: &LeaseScope,
        shard_id: &str,
        owner: &str,
        observed_counter: u64,
    ) -> Result<Option<Lease>> {
        let mut leases = self.leases.lock();
        match leases.get_mut(&scope.key(shard_id)) {
            Some(lease) if lease.counter == observed_counter => {
                lease.owner = Some(owner.to_owned());
                lease.handoff_to = None;
                lease.counter += 1;
                Ok(Some(lease.clone()))
            }
            _ => Ok(None),
        }
    }

    fn renew(&self, scope: &LeaseScope, lease: &Lease) -> Result<Lease> {
        self.update_owned(scope, lease, |_| {})
    }

    fn checkpoint(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease> {
        self.update_owned(scope, lease, |stored| {
            stored.checkpoint = Some(checkpoint.clone())
        })
    }

    fn release(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: Option<&Checkpoint>,
        to: Option<&str>,
    ) -> Result<()> {
        self.update_owned(scope, lease, |stored| {
            if let Some(checkpoint) = checkpoint {
                stored.checkpoint = Some(checkpoint.clone());
            }
            stored.owner = to.map(str::to_owned);
            stored.handoff_to = None;
        })
        .map(drop)
    }

    fn request_handoff(&self, scope: &LeaseScope, lease: &Lease, asker: &str) -> Result<bool> {
        let mut leases = self.leases.lock();
        match leases.get_mut(&scope.key(&lease.shard_id)) {
            Some(stored)
                if stored.owner == lease.owner
                    && stored.owner.is_some()
                    && stored.handoff_to.is_none() =>
            {
                stored.handoff_to = Some(asker.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn pin_start(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        start: &IteratorPosition,
    ) -> Result<Lease> {
        self.update_owned(scope, lease, |stored| stored.start = Some(start.clone()))
    }

    /// Process memory ends with the process: nothing to collect.
    fn set_expiry(&self, _scope: &LeaseScope, _shard_id: &str, _expire: bool) -> Result<()> {
        Ok(())
    }
}
