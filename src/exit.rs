//! The exit-code table: the one place that maps outcomes to process exit
//! codes. Documented in `--help` and the README; the systemd unit and
//! monitoring rely on it.

use crate::report::{Outcome, RunResult};

/// Every pool replicated: data was sent, everything is in sync.
pub const OK: u8 = 0;
/// Nothing to do: everything was already up to date (or this node is a standby).
pub const NOTHING_TO_DO: u8 = 1;
/// Usage or configuration error: nothing was done.
pub const CONFIG: u8 = 2;
/// Transient failure (ssh, timeout, a `zfs` command failed, pool busy): the next run retries.
pub const TRANSIENT: u8 = 3;
/// Refused: a conflict, divergence or failed check that needs the operator. Nothing unsafe was done.
pub const REFUSED: u8 = 4;
/// Internal error (a bug): please report it.
pub const INTERNAL: u8 = 5;
/// `status --check` could not judge (the monitoring plugin convention).
pub const UNKNOWN: u8 = 3;

pub const TABLE: &str = "\
Exit codes:
  0  replicated: data was sent and every dataset is in sync
  1  nothing to do: everything was already up to date, or this node is not master
  2  usage or configuration error: nothing was done
  3  transient failure (ssh, timeout, zfs error, pool busy): the next run retries
  4  refused: conflict, divergence, size guard, unhealthy pool or failed check; needs the operator, nothing unsafe was done
  5  internal error";

/// The name of an exit code, as `status.json` writes it.
pub fn result_of(code: u8) -> RunResult {
    match code {
        OK => RunResult::Replicated,
        NOTHING_TO_DO => RunResult::NothingToDo,
        CONFIG => RunResult::ConfigError,
        TRANSIENT => RunResult::TransientFailure,
        REFUSED => RunResult::Refused,
        _ => RunResult::InternalError,
    }
}

/// Combine pool outcomes: the worst wins; "replicated" beats "nothing to do".
pub fn combine(outcomes: impl IntoIterator<Item = Outcome>) -> u8 {
    let worst = outcomes.into_iter().max().unwrap_or(Outcome::NothingToDo);
    match worst {
        Outcome::NothingToDo => NOTHING_TO_DO,
        Outcome::Replicated => OK,
        Outcome::Transient => TRANSIENT,
        Outcome::Refused => REFUSED,
    }
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
