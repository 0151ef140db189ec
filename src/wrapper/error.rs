//! The wrapper's one error type: a typed kind (what a caller can branch on, and what decides the
//! exit code, through `cli::exit` only) and one line for people.

use crate::store::StoreError;

pub use crate::cli::exit::Kind;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    pub fn io(message: impl Into<String>) -> Error {
        Error::new(Kind::Io, message)
    }
}

impl From<crate::unique::ClaimError> for Error {
    fn from(e: crate::unique::ClaimError) -> Error {
        use crate::unique::ClaimError as C;
        match e {
            C::Store(se) => se.into(),
            C::Held { .. } => Error::new(Kind::UniqueHeld, e.to_string()),
            C::BadKey(..) => Error::usage(e.to_string()),
            C::Lock { .. } => Error::new(Kind::StateDir, e.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::new(Kind::of_store(&e), Kind::store_message(&e))
    }
}
