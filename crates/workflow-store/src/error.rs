//! Turning sqlx errors into portable [`StoreError`]s, so callers never match on sqlx types.

use std::sync::Arc;

use sqlx::error::ErrorKind;
use workflow_worker_core::{Execution, ExecutionId, SignalId, StoreError};

/// How SQLite's concurrency-key triggers begin their messages.
const SQLITE_CONCURRENCY_KEY: &str = "concurrency key: ";

/// Classifies a sqlx error.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    match err {
        // Raised by the stores' insert triggers (migration 0020): a start's concurrency key is
        // missing, too long, or not wanted. PostgreSQL says so with its own SQLSTATE; SQLite's
        // RAISE takes only a message, which starts with this prefix.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("WW001") => {
            StoreError::ConcurrencyKey(db.message().to_owned())
        }
        sqlx::Error::Database(db) if db.message().starts_with(SQLITE_CONCURRENCY_KEY) => {
            StoreError::ConcurrencyKey(db.message()[SQLITE_CONCURRENCY_KEY.len()..].to_owned())
        }
        sqlx::Error::Database(db)
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation
            ) =>
        {
            StoreError::Constraint {
                constraint: db
                    .constraint()
                    .map_or_else(|| db.message().to_owned(), str::to_owned),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => StoreError::Unavailable(Box::new(err)),
        sqlx::Error::Database(ref db) if is_unavailable(db.code().as_deref()) => {
            StoreError::Unavailable(Box::new(err))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

/// SQLSTATE classes that mean "the server cannot serve us right now": connection exceptions
/// (08), insufficient resources (53), operator intervention such as a shutdown (57P), and a
/// transaction the server rolled back to resolve a deadlock or serialization failure (40001,
/// 40P01); SQLite's busy and locked result codes (5, 261, 517, 6): trying again is the remedy for
/// each.
fn is_unavailable(code: Option<&str>) -> bool {
    code.is_some_and(|code| {
        code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "40001"
            || code == "40P01"
            // SQLite: the database stayed busy or locked past the busy timeout.
            || code == "5"
            || code == "261"
            || code == "517"
            || code == "6"
    })
}

/// The same error for each of `count` steps of a batch it failed.
pub(crate) fn share(err: StoreError, count: usize) -> Vec<StoreError> {
    type Source = Arc<dyn std::error::Error + Send + Sync>;
    let repeat = |make: &dyn Fn() -> StoreError| (0..count).map(|_| make()).collect();
    match err {
        StoreError::Unavailable(source) => {
            let source: Source = Arc::from(source);
            repeat(&|| StoreError::Unavailable(Box::new(Shared(source.clone()))))
        }
        StoreError::Backend(source) => {
            let source: Source = Arc::from(source);
            repeat(&|| StoreError::Backend(Box::new(Shared(source.clone()))))
        }
        StoreError::Constraint { constraint } => repeat(&|| StoreError::Constraint {
            constraint: constraint.clone(),
        }),
        StoreError::InvalidData(message) => repeat(&|| StoreError::InvalidData(message.clone())),
        other => {
            let source: Source = Arc::new(other);
            repeat(&|| StoreError::Backend(Box::new(Shared(source.clone()))))
        }
    }
}

/// An error reported to several callers: shows as the original, with its causes.
#[derive(Debug)]
struct Shared(Arc<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A stored value that cannot be read back.
pub(crate) fn invalid(message: String) -> StoreError {
    StoreError::InvalidData(message)
}

/// An operation that needs a live execution found this one ended.
pub(crate) fn already_ended(execution: Execution) -> StoreError {
    StoreError::AlreadyEnded {
        execution_id: execution.id,
        status: execution.status,
    }
}

/// A pause or resume that changed nothing: the execution as it is, unless it ended, which
/// is [`StoreError::AlreadyEnded`].
pub(crate) fn unchanged_unless_ended(execution: Execution) -> Result<Execution, StoreError> {
    if execution.status.is_terminal() {
        Err(already_ended(execution))
    } else {
        Ok(execution)
    }
}

/// A node tried to consume a signal that another step already consumed.
pub(crate) fn signal_taken(signal: SignalId, execution: ExecutionId) -> StoreError {
    StoreError::SignalConsumed {
        execution_id: execution,
        signal_id: signal,
    }
}

/// A step's node run is recorded already: `err` broke the node runs' unique key.
pub(crate) fn already_recorded(err: StoreError, execution: ExecutionId) -> StoreError {
    match err {
        StoreError::Constraint { .. } => StoreError::AlreadyRecorded {
            execution_id: execution,
        },
        other => other,
    }
}

/// `err` and its sources on one line, each cause once (sqlx messages often repeat their
/// source's).
#[cfg(feature = "testing")]
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !line.contains(&message) {
            line.push_str(": ");
            line.push_str(&message);
        }
        source = cause.source();
    }
    line
}
