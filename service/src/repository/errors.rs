//! Driver errors mapped to what a client needs to know: unavailable (try
//! again), an unknown outcome (a write sent and never confirmed), or a fault.

use std::time::Duration;

use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};

use super::documents::InvalidStoredBook;

/// Why a database call failed, as far as a client needs to know.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The database cannot be reached now (down, restarting, unreachable);
    /// the driver reconnects by itself once it is back.
    #[error("the database is unavailable")]
    Unavailable(#[source] MongoError),
    #[error("the database did not answer within {0:?}")]
    TimedOut(Duration),
    /// Another write to the same book held it past the deadline (the
    /// database is slow or stuck); this one was never sent.
    #[error("another write to this book did not finish within {0:?}; this one was not sent")]
    Busy(Duration),
    /// A write was sent and no answer came: it may have been applied. Never
    /// reported as "nothing was written".
    #[error("the database did not confirm the write ({0}); it may have been applied")]
    OutcomeUnknown(String),
    /// The stored document is not a book this service can return: another
    /// program wrote it. Says which document and what is wrong with it.
    #[error(transparent)]
    InvalidStored(#[from] InvalidStoredBook),
    #[error("database error")]
    Other(#[source] MongoError),
}

impl RepositoryError {
    /// The `kind` label of `books_ms_db_errors_total`: one per variant.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RepositoryError::Unavailable(_) => "unavailable",
            RepositoryError::TimedOut(_) => "timeout",
            RepositoryError::Busy(_) => "busy",
            RepositoryError::OutcomeUnknown(_) => "outcome_unknown",
            RepositoryError::InvalidStored(_) => "invalid_stored",
            RepositoryError::Other(_) => "other",
        }
    }
}

/// Server codes meaning "this server cannot serve now": the ones the
/// driver's retryable-write rules name (HostUnreachable, HostNotFound,
/// NetworkTimeout, ShutdownInProgress, ReadConcernMajorityNotAvailableYet,
/// PrimarySteppedDown, ExceededTimeLimit, SocketException, LegacyNotPrimary,
/// NotWritablePrimary, InterruptedAtShutdown,
/// InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk,
/// NotPrimaryOrSecondary), and 1, InternalError, which FerretDB answers for
/// any failure of its storage backend. MongoDB labels the retryable ones
/// `RetryableWriteError` itself; FerretDB labels nothing, and the driver adds
/// the label only to network errors, so the label alone misses them there.
const TRANSIENT_SERVER_CODES: [i32; 15] =
    [1, 6, 7, 89, 91, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436];

/// The code of an error the server reported for the whole command (not a
/// per-document write error such as E11000, which says something definite).
fn server_code(e: &MongoError) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

impl From<MongoError> for RepositoryError {
    fn from(e: MongoError) -> Self {
        match *e.kind {
            ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => {
                RepositoryError::Unavailable(e)
            }
            // Failures the driver itself would retry are transient too.
            _ if e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) => RepositoryError::Unavailable(e),
            // The same failures from a server that does not label them
            // (FerretDB). On a write, `unknown_if_sent` makes them "outcome
            // unknown": the server had the command.
            _ if server_code(&e).is_some_and(|c| TRANSIENT_SERVER_CODES.contains(&c)) => {
                RepositoryError::Unavailable(e)
            }
            _ => RepositoryError::Other(e),
        }
    }
}

/// Is this the duplicate-key error (E11000) that two concurrent upserts of a
/// new `_id` can get (both try to insert, one loses)?
pub(super) fn is_duplicate_key(e: &MongoError) -> bool {
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// For a write: once it may have reached the server (anything but a failed
/// server selection), a failure is an unknown outcome, not an unavailable
/// database.
pub(super) fn unknown_if_sent<T>(result: Result<T, RepositoryError>) -> Result<T, RepositoryError> {
    match result {
        Err(RepositoryError::TimedOut(deadline)) => {
            Err(RepositoryError::OutcomeUnknown(format!("no answer within {deadline:?}")))
        }
        Err(RepositoryError::Unavailable(e)) if !matches!(*e.kind, ErrorKind::ServerSelection { .. }) => {
            Err(RepositoryError::OutcomeUnknown(e.to_string()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn command_error(code: i32) -> MongoError {
        let e: mongodb::error::CommandError =
            mongodb::bson::from_document(doc! { "code": code, "codeName": "X", "errmsg": "m" })
                .expect("a command error");
        MongoError::from(ErrorKind::Command(e))
    }

    /// A server that cannot serve now (FerretDB's backend failing, a
    /// shutdown, a primary stepping down) is a 503, never a 500: "unavailable"
    /// for a read, "outcome unknown" for a write. A definite refusal stays
    /// what it is.
    #[test]
    fn unlabelled_transient_server_errors_are_not_internal() {
        for code in [1, 91, 11600, 10107] {
            assert!(matches!(RepositoryError::from(command_error(code)), RepositoryError::Unavailable(_)), "{code}");
            let write = unknown_if_sent::<()>(Err(RepositoryError::from(command_error(code))));
            assert!(matches!(write, Err(RepositoryError::OutcomeUnknown(_))), "{code}");
        }
        // BadValue: the request was wrong, a retry will not help.
        assert!(matches!(RepositoryError::from(command_error(2)), RepositoryError::Other(_)));
    }

    /// What `/metrics` counts: a timeout is told apart from an outage.
    #[test]
    fn each_failure_has_its_own_kind() {
        assert_eq!(RepositoryError::from(command_error(91)).kind(), "unavailable");
        assert_eq!(RepositoryError::from(command_error(2)).kind(), "other");
        assert_eq!(RepositoryError::TimedOut(Duration::from_secs(1)).kind(), "timeout");
        assert_eq!(RepositoryError::Busy(Duration::from_secs(1)).kind(), "busy");
    }
}
