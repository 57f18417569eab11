//! Where the history lives, as the config names it: the store opens what
//! these say (the config reads them from `[database]`).

use crate::secret::Token;
use std::path::PathBuf;

/// `[database]`: where the history lives.
#[derive(Debug, Clone)]
pub enum Database {
    /// `path`: an embedded SQLite file (the default).
    Sqlite(PathBuf),
    /// `url`: a PostgreSQL database, which several nodes may share.
    Postgres(PostgresSettings),
}

impl Database {
    /// How logs and errors name it: the file, or the URL (which holds no
    /// password: the config refuses one).
    pub fn name(&self) -> String {
        match self {
            Database::Sqlite(path) => path.display().to_string(),
            Database::Postgres(pg) => pg.url.to_string(),
        }
    }

    /// The SQLite file, if the history is in one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Database::Sqlite(path) => Some(path),
            Database::Postgres(_) => None,
        }
    }
}

/// `[database]` with `url`.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `url`, without a password; `sslmode` made explicit (`verify-full`
    /// unless set; `disable` only to loopback).
    pub url: reqwest::Url,
    /// `password_env` or `password_file`.
    pub password: Option<Token>,
}
