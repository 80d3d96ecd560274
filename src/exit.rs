//! The exit-code table: the one place that maps outcomes to process exit
//! codes. Documented in `--help` and the README; the systemd unit and
//! monitoring rely on it.

use crate::report::{Outcome, RunResult};

/// Every pool replicated: data was sent, everything is in sync.
const OK: u8 = 0;
/// Nothing to do: everything was already up to date (or this node is a standby).
const NOTHING_TO_DO: u8 = 1;
/// Usage or configuration error: nothing was done.
const CONFIG: u8 = 2;
/// Transient failure (ssh, timeout, a `zfs` command failed, pool busy): the next run retries.
const TRANSIENT: u8 = 3;
/// Refused: a conflict, divergence or failed check that needs the operator. Nothing unsafe was done.
const REFUSED: u8 = 4;
/// Internal error (a bug): please report it.
const INTERNAL: u8 = 5;
/// `serve`: the request was refused (not ours, outside the configured
/// pools, or this node receives nothing now). Distinct from every `zfs`
/// exit code, so the asking node can tell.
const SERVE_REFUSED: u8 = 6;
/// `status --check` could not judge (the monitoring plugin convention).
pub const UNKNOWN: u8 = 3;

pub const TABLE: &str = "\
Exit codes:
  0  replicated: data was sent and every dataset is in sync
  1  nothing to do: everything was already up to date, or this node is not master
  2  usage or configuration error: nothing was done
  3  transient failure (ssh, timeout, zfs error, pool busy): the next run retries
  4  refused: conflict, divergence, size guard, unhealthy pool or failed check; needs the operator, nothing unsafe was done
  5  internal error
  6  serve (the replication key's forced command): the request was refused";

/// How a command ends: the one typed value every command returns, mapped
/// to a process exit code in one place ([`Exit::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: data was replicated, or the command did what it was asked.
    Ok,
    /// Nothing to do: everything was already up to date, or not master.
    NothingToDo,
    /// Usage or configuration error: nothing was done.
    Config,
    /// A failure the next run may not meet again.
    Transient,
    /// Refused: needs the operator; nothing unsafe was done.
    Refused,
    /// A bug.
    Internal,
    /// `serve` refused the request.
    ServeRefused,
    /// `status`: the monitoring-plugin convention (0 OK, 1 WARNING,
    /// 2 CRITICAL, 3 UNKNOWN), not the table above.
    Monitoring(u8),
}

impl Exit {
    /// The process exit code: the one place that picks it.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => OK,
            Exit::NothingToDo => NOTHING_TO_DO,
            Exit::Config => CONFIG,
            Exit::Transient => TRANSIENT,
            Exit::Refused => REFUSED,
            Exit::Internal => INTERNAL,
            Exit::ServeRefused => SERVE_REFUSED,
            Exit::Monitoring(c) => c,
        }
    }

    /// How bad an ending is, for combining: "done" beats "nothing to do".
    fn rank(self) -> u8 {
        match self {
            Exit::NothingToDo => 0,
            Exit::Ok => 1,
            Exit::Transient => 2,
            Exit::Refused | Exit::ServeRefused => 3,
            Exit::Config => 4,
            Exit::Internal => 5,
            Exit::Monitoring(c) => c,
        }
    }

    /// The worse of two endings (the worst wins; done beats nothing to do).
    pub fn and(self, other: Exit) -> Exit {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    /// Did the command end well (done, or nothing to do)?
    pub fn is_success(self) -> bool {
        matches!(self, Exit::Ok | Exit::NothingToDo)
    }

    /// Its name, as `status.json` writes it.
    pub fn result(self) -> RunResult {
        match self {
            Exit::Ok => RunResult::Replicated,
            Exit::NothingToDo => RunResult::NothingToDo,
            Exit::Config => RunResult::ConfigError,
            Exit::Transient => RunResult::TransientFailure,
            Exit::Refused | Exit::ServeRefused => RunResult::Refused,
            Exit::Internal | Exit::Monitoring(_) => RunResult::InternalError,
        }
    }
}

/// Compared with a process exit code (tests).
impl PartialEq<u8> for Exit {
    fn eq(&self, other: &u8) -> bool {
        self.code() == *other
    }
}

impl From<Outcome> for Exit {
    fn from(o: Outcome) -> Exit {
        match o {
            Outcome::NothingToDo => Exit::NothingToDo,
            Outcome::Replicated => Exit::Ok,
            Outcome::Transient => Exit::Transient,
            Outcome::Refused => Exit::Refused,
        }
    }
}

/// Combine pool outcomes: the worst wins; "replicated" beats "nothing to do".
pub fn combine(outcomes: impl IntoIterator<Item = Outcome>) -> Exit {
    outcomes
        .into_iter()
        .map(Exit::from)
        .fold(Exit::NothingToDo, Exit::and)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_wins() {
        use Outcome::*;
        assert_eq!(combine([]), NOTHING_TO_DO);
        assert_eq!(combine([NothingToDo, NothingToDo]), NOTHING_TO_DO);
        assert_eq!(combine([NothingToDo, Replicated]), OK);
        assert_eq!(combine([Replicated, Transient]), TRANSIENT);
        assert_eq!(combine([Refused, Transient, Replicated]), REFUSED);
    }
}
