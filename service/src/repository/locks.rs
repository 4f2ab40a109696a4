//! Writes to one `_id` ordered within the process.

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::{BookRepository, RepositoryError};
use crate::domain::BookId;

/// Writes to one `_id` go one at a time through this process: FerretDB (the
/// lab's database) runs a findAndModify-remove as a find, then a delete by
/// `_id`, and an update as a query, then an update or insert of what it
/// found (v1.24's handlers), so two racing writes could both "remove"
/// the same book or a PUT be acknowledged and then lost to a delete it never
/// followed. MongoDB does each atomically; there the lock costs a mutex.
/// Striped: ids share a fixed set of locks, so memory stays fixed whatever
/// the ids (1,024 small mutexes). With 64 stripes, two writes of
/// different ids waited for each other often enough under load to double
/// the slowest PUTs (docs/benchmarks.md, issue 12).
/// It orders the writes of one process only (one live colour at a time).
#[derive(Debug)]
pub(super) struct IdLocks(Vec<Mutex<()>>);

impl IdLocks {
    const STRIPES: usize = 1024;

    pub(super) fn new() -> Self {
        IdLocks((0..Self::STRIPES).map(|_| Mutex::new(())).collect())
    }

    fn get(&self, id: BookId) -> &Mutex<()> {
        &self.0[id.get().unsigned_abs() as usize % Self::STRIPES]
    }
}

impl BookRepository {
    /// Takes the write lock of `id` ([`IdLocks`]); the wait counts against
    /// the operation's deadline, returned for the write itself.
    pub(super) async fn lock(&self, id: BookId) -> Result<(MutexGuard<'_, ()>, Instant), RepositoryError> {
        let until = Instant::now() + self.deadline;
        let guard = self.counted(
            tokio::time::timeout_at(until, self.locks.get(id).lock())
                .await
                .map_err(|_| RepositoryError::Busy(self.deadline)),
        )?;
        Ok((guard, until))
    }
}
