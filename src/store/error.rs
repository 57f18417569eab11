//! Why the store failed. Every variant names the database (a SQLite file,
//! or a PostgreSQL URL without its password); the cause underneath (the
//! driver's error, a file's) is kept as the error's source and formatted
//! from it, never copied into a message.

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, created, locked or migrated.
    #[error("history database {name}: {}", described(what, source))]
    Open {
        /// The database.
        name: String,
        /// What was being done ("migration failed").
        what: &'static str,
        /// Why.
        #[source]
        source: Cause,
    },
    /// A statement failed.
    #[error("history database {name}: {source}")]
    Query {
        /// The database.
        name: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A write refused because this node no longer holds the lease: not a
    /// database failure, the node is standing by.
    #[error("history database {name}: {what}")]
    Fenced {
        /// The database.
        name: String,
        /// What was refused, and why.
        what: String,
    },
    /// A write refused because another process changed the row first.
    #[error("history database {name}: {what}")]
    Conflict {
        /// The database.
        name: String,
        /// What was refused, and why.
        what: &'static str,
    },
    /// The database answered something that cannot be (a row that cannot
    /// be decoded, a copy that does not match its source, an injected fault).
    #[error("history database {name}: {what}")]
    Invalid {
        /// The database.
        name: String,
        /// What is wrong.
        what: String,
    },
}

/// `"what: cause"`, or the cause alone when `what` is empty.
fn described(what: &str, source: &Cause) -> String {
    if what.is_empty() {
        source.to_string()
    } else {
        format!("{what}: {source}")
    }
}

impl StoreError {
    /// What the database `name` answered that cannot be.
    pub fn invalid(name: &str, what: impl Into<String>) -> StoreError {
        StoreError::Invalid {
            name: name.to_owned(),
            what: what.into(),
        }
    }

    /// Opening `name` failed while doing `what`.
    pub(super) fn open(name: &str, what: &'static str, source: impl Into<Cause>) -> StoreError {
        StoreError::Open {
            name: name.to_owned(),
            what,
            source: source.into(),
        }
    }

    /// A statement on `name` failed.
    pub(super) fn query(name: &str, source: sqlx::Error) -> StoreError {
        StoreError::Query {
            name: name.to_owned(),
            source,
        }
    }

    /// Whether the write was refused because this node no longer holds
    /// the lease: not a database failure, the node is standing by.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }

    /// Whether the database refused a write for the unique constraint
    /// (index) `name`.
    pub(super) fn violates(&self, name: &str) -> bool {
        matches!(self, StoreError::Query { source: sqlx::Error::Database(e), .. } if e.constraint() == Some(name))
    }
}
