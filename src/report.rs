//! What a run did, pool by pool: the report every command, `status`, the
//! metrics and the exit code are made from. It sits at the bottom: it knows
//! nothing of how the work was done.

use std::fmt::Write as _;
use std::time::Duration;

use crate::units::human_bytes;
use crate::zfs::Listing;

/// A closed set of names as the files and answers write them: a typed value
/// inside, the same string outside (serde, `Display`), comparable with a
/// string where a test reads it.
macro_rules! named {
    ($(#[$m:meta])* pub enum $t:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $t {
            $($(#[$vm])* #[serde(rename = $s)] $v,)*
        }
        impl $t {
            pub const ALL: &[$t] = &[$($t::$v),*];
            pub fn as_str(self) -> &'static str {
                match self { $($t::$v => $s,)* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    };
}

named! {
    /// How one pool's run ended. Ordered from best to worst, except that
    /// "replicated" beats "nothing to do" when outcomes are combined
    /// ([`crate::exit`]).
    #[derive(PartialOrd, Ord)]
    pub enum Outcome {
        /// Everything was already in sync.
        NothingToDo = "nothing-to-do",
        /// Data was sent and every dataset is in sync.
        Replicated = "replicated",
        /// Something failed that the next run may fix (network, timeout, lock).
        Transient = "transient-failure",
        /// A conflict or refusal that needs the operator.
        Refused = "refused",
    }
}

named! {
    /// A node's role, as `status.json`, `role.json` and `role --json` write it.
    pub enum RoleName {
        Master = "master",
        Standby = "standby",
        Unsure = "unsure",
    }
}

named! {
    /// How a whole run ended, by its exit code.
    pub enum RunResult {
        Replicated = "replicated",
        NothingToDo = "nothing-to-do",
        ConfigError = "config-error",
        TransientFailure = "transient-failure",
        Refused = "refused",
        InternalError = "internal-error",
    }
}

named! {
    /// One dataset's result, as the status writes it.
    pub enum DatasetOutcome {
        Sent = "sent",
        UpToDate = "up-to-date",
        Conflict = "conflict",
        Failed = "failed",
        Skipped = "skipped",
        Planned = "planned",
    }
}

#[derive(Debug, Clone)]
pub enum DatasetResult {
    UpToDate,
    Sent {
        bytes: u64,
        secs: f64,
    },
    Skipped(String),
    Conflict(String),
    Failed(String),
    /// Dry run: what would happen.
    Planned(String),
}

#[derive(Debug, Clone)]
pub struct DatasetReport {
    pub source: String,
    pub target: String,
    pub result: DatasetResult,
}

#[derive(Debug, Clone)]
pub struct PoolReport {
    pub pool: String,
    pub peer: String,
    pub outcome: Outcome,
    pub datasets: Vec<DatasetReport>,
    pub receiver_only: Vec<String>,
    pub bytes: u64,
    pub duration: Duration,
    /// A failure of the pool as a whole (listing, holds), if any.
    pub error: Option<String>,
    /// Both sides as they are after the run (not in dry-run): what the size
    /// history records.
    pub listings: Option<(Listing, Listing)>,
    /// Datasets set aside on the receiver by `resolve` (kept, never replicated).
    pub quarantine: Vec<String>,
}

impl PoolReport {
    pub fn summary(&self) -> String {
        let count =
            |f: fn(&DatasetResult) -> bool| self.datasets.iter().filter(|d| f(&d.result)).count();
        let mut s = format!(
            "pool {} -> {}: {:?}: {} sent ({}), {} up to date, {} conflict(s), {} failed, {} skipped in {:.1}s",
            self.pool,
            self.peer,
            self.outcome,
            count(|r| matches!(r, DatasetResult::Sent { .. })),
            human_bytes(self.bytes),
            count(|r| matches!(r, DatasetResult::UpToDate)),
            count(|r| matches!(r, DatasetResult::Conflict(_))),
            count(|r| matches!(r, DatasetResult::Failed(_))),
            count(|r| matches!(r, DatasetResult::Skipped(_))),
            self.duration.as_secs_f64()
        );
        if !self.receiver_only.is_empty() {
            let _ = write!(
                s,
                ", {} only on the receiver (kept)",
                self.receiver_only.len()
            );
        }
        if !self.quarantine.is_empty() {
            let _ = write!(
                s,
                ", {} set aside in the quarantine (kept)",
                self.quarantine.len()
            );
        }
        if let Some(e) = &self.error {
            let _ = write!(s, "; error: {e}");
        }
        s
    }
}
