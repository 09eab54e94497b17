//! The library's error type and how each kind maps to an exit code.

use crate::diagnostics::Diagnostics;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong (project files, arguments): exit code 2.
    #[error("{0}")]
    Input(Diagnostics),
    /// The data failed a check (audit, validation, window check): exit code 1.
    #[error("{0}")]
    Data(String),
    /// A source's data cannot be read as declared (bad rows, unreadable files,
    /// schema drift), reported at the source's declaration: exit code 1.
    #[error("{0}")]
    BadData(Diagnostics),
    /// The warehouse or its engine failed: exit code 1.
    #[error("{0}")]
    Engine(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The user interrupted the run (Ctrl-C); nothing was published.
    #[error("interrupted; the published warehouse is unchanged")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Error::Input(d)
    }
}

impl From<crate::diagnostics::Diagnostic> for Error {
    fn from(d: crate::diagnostics::Diagnostic) -> Self {
        Error::Input(d.into())
    }
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        Error::Engine(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
