//! Turning sqlx errors into portable [`StoreError`]s, so callers never match on sqlx types.

use sqlx::error::ErrorKind;
use workflow_core::{Execution, ExecutionId, StoreError};

/// Classifies a sqlx error.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::Database(db)
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation
            ) =>
        {
            StoreError::Conflict(db.message().to_owned())
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
/// (08), insufficient resources (53), operator intervention such as a shutdown (57P).
fn is_unavailable(code: Option<&str>) -> bool {
    code.is_some_and(|code| {
        code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
    })
}

/// A stored value that cannot be read back.
pub(crate) fn invalid(message: String) -> StoreError {
    StoreError::InvalidData(message)
}

/// An operation that needs a live execution found this one ended.
pub(crate) fn already_ended(execution: Execution) -> StoreError {
    StoreError::Conflict(format!(
        "execution {} already ended ({})",
        execution.id, execution.status
    ))
}

/// A node tried to consume a signal that another step already consumed.
pub(crate) fn signal_taken(signal: i64, execution: ExecutionId) -> StoreError {
    StoreError::Conflict(format!(
        "signal {signal} of execution {execution} was already consumed"
    ))
}
