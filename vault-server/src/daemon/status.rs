//! The one mapping from library errors to gRPC status codes.
//!
//! Messages are the library's, which name fields and rules but never personal-data values
//! or key bytes. Internal failures are logged in full and returned with a short message
//! (the client cannot act on an I/O error's details; the operator can, in the log).

use tonic::{Code, Status};
use vault_core::Error;
use vault_core::storage::StoreError;

/// Converts a library error to the status a client sees.
pub fn to_status(err: Error) -> Status {
    let msg = err.to_string();
    let code = match &err {
        Error::InvalidInput(_) => Code::InvalidArgument,
        Error::NotFound(_) => Code::NotFound,
        Error::AlreadyExists(_) => Code::AlreadyExists,
        Error::PermissionDenied(_) => Code::PermissionDenied,
        Error::Unauthenticated(_) => Code::Unauthenticated,
        Error::FailedPrecondition(_) => Code::FailedPrecondition,
        Error::Integrity(_) => {
            tracing::error!(error = %msg, "integrity check failed; the stored data was altered");
            Code::DataLoss
        }
        Error::Contention(_)
        | Error::Storage(StoreError::Conflict(_) | StoreError::Contended(_)) => Code::Aborted,
        Error::Storage(StoreError::NotDurable(_)) => {
            tracing::error!(error = %msg, "store not durable");
            Code::Unavailable
        }
        // The store's own log line (`vault::store`) has the engine's detail; the message
        // names the cause and the remedy, which the client can pass on to the operator.
        Error::StoreUnavailable { .. } | Error::Storage(StoreError::Unavailable { .. }) => {
            Code::Unavailable
        }
        _ => {
            tracing::error!(error = %msg, "internal error");
            return Status::internal(
                "internal error in the vault; the operator will find the cause in the server log",
            );
        }
    };
    Status::new(code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vault_core::{IntegrityObject, InvalidInput};

    #[test]
    fn codes() {
        assert_eq!(
            to_status(InvalidInput::new("email", "bad").into()).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            to_status(Error::NotFound("x".into())).code(),
            Code::NotFound
        );
        assert_eq!(
            to_status(Error::AlreadyExists("x".into())).code(),
            Code::AlreadyExists
        );
        assert_eq!(
            to_status(Error::PermissionDenied("x".into())).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            to_status(Error::Integrity(IntegrityObject::Record("a".into()))).code(),
            Code::DataLoss
        );
        let full = to_status(Error::StoreUnavailable {
            cause: vault_core::storage::Unavailable::NoSpace,
        });
        assert_eq!(full.code(), Code::Unavailable);
        assert!(
            full.message()
                .contains("no space left on the data directory's file system; free space and restart the daemon"),
            "{}",
            full.message()
        );
        let db_full = to_status(
            StoreError::Unavailable {
                cause: vault_core::storage::Unavailable::DatabaseDiskFull,
                detail: "PostgreSQL: ERROR 53100: could not extend file".into(),
            }
            .into(),
        );
        assert_eq!(db_full.code(), Code::Unavailable);
        assert!(
            db_full.message().contains("SQLSTATE 53100"),
            "{}",
            db_full.message()
        );
        // The engine's detail stays in the server log.
        assert!(!db_full.message().contains("could not extend"));
        let internal = to_status(Error::Storage(StoreError::Engine(
            "/secret/path: EIO".into(),
        )));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("/secret/path"));
    }
}
