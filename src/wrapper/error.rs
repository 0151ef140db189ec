//! The wrapper's one error type: a typed kind (what a caller can branch on, and what decides the
//! exit code, through `cli::exit` only) and one line for people.

use serde::{Deserialize, Serialize};

use crate::cli::exit;
use crate::store::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Bad options, a bad id, or an id already taken.
    Usage,
    /// The state directory cannot be used.
    StateDir,
    /// A record is corrupt or of a newer protocol version.
    Corrupt,
    /// The job's record does not exist.
    NoSuchJob,
    /// Any other I/O failure, including a result that could not be recorded.
    Io,
    /// The command exists but cannot be executed.
    NotExecutable,
    /// The command was not found.
    NotFound,
    /// `--unique KEY`: another active job holds the key.
    UniqueHeld,
}

impl Kind {
    /// The exit code protocol.md section 9 gives this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => exit::USAGE,
            Kind::StateDir => exit::STATE_DIR,
            Kind::Corrupt => exit::CORRUPT,
            Kind::NoSuchJob => exit::NO_SUCH_JOB,
            Kind::Io => exit::IO,
            Kind::NotExecutable => exit::NOT_EXECUTABLE,
            Kind::NotFound => exit::NOT_FOUND,
            Kind::UniqueHeld => exit::UNIQUE_HELD,
        }
    }
}

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

    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
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
        let kind = match &e {
            StoreError::NotFound(..) | StoreError::Ambiguous { .. } => Kind::NoSuchJob,
            StoreError::Exists(..) | StoreError::InvalidId(..) => Kind::Usage,
            StoreError::Record { .. } => Kind::Corrupt,
            StoreError::Dir { .. } | StoreError::ReadOnly(..) => Kind::StateDir,
            StoreError::Io { .. } => Kind::Io,
        };
        Error::new(kind, e.to_string())
    }
}
