//! A plan as data: every command the tool runs to change something is a
//! [`Step`] (the command value, why, whether it destroys anything, whether
//! a failure stops what follows), and every list of steps is carried out by
//! the one executor ([`crate::execute`]), which is also the one place that
//! decides between running a step and only showing it (dry-run). Tests
//! compare step values, not text.

use serde::{Deserialize, Serialize};

use crate::zfs::Op;

/// One command of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub op: Op,
    /// Why, for people.
    pub note: String,
    /// Destroys something (a rollback, `recv -F`): shown and logged as such.
    pub destructive: bool,
    /// A failure is reported but does not stop the steps after it (mounts).
    pub best_effort: bool,
}

/// A step that must succeed for the next ones to run, destroys nothing.
pub fn step(op: Op, note: impl Into<String>) -> Step {
    Step {
        op,
        note: note.into(),
        destructive: false,
        best_effort: false,
    }
}

impl Step {
    /// The same step, whose failure does not stop the steps after it.
    pub fn best_effort(mut self) -> Step {
        self.best_effort = true;
        self
    }

    /// The same step, marked as destroying something.
    pub fn destructive(mut self) -> Step {
        self.destructive = true;
        self
    }
}
