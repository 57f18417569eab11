//! Exit codes, as the contract fixes them.

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything succeeded.
    Success,
    /// 1: a rotation failed, or a runtime error.
    Failure,
    /// 2: the command line was wrong (clap exits 2 by itself too).
    Usage,
    /// 66 (EX_NOINPUT): a file the command was told to read does not exist
    /// (`history --database` naming no database).
    NoInput,
    /// 78 (EX_CONFIG): the config is invalid; systemd must not restart-loop on it.
    Config,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NoInput => 66,
            Exit::Config => 78,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}
