//! The one executor: carries out a list of [`Step`]s on one side, in order,
//! and is the one place that decides between running a step and only
//! showing it (dry-run). Role changes, resolve, adopt and the engine's hold
//! moves all go through it; what it ran or would run is kept in
//! [`Executor::shown`], the record of the plan.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::runner::{RunError, Runner, stderr_head};
use crate::side::Side;
use crate::step::Step;
use crate::zfs::Op;

/// Runs steps, or shows them.
pub struct Executor<'a, R: Runner> {
    pub runner: &'a R,
    /// Show every step, run none.
    pub dry_run: bool,
    /// The deadline of one command.
    pub command_timeout: Duration,
    /// The deadline of a step that moves data (a local copy).
    pub transfer_timeout: Duration,
    /// In dry-run, every step that would run, as people read it: the
    /// record of the plan that `--dry-run` prints.
    pub shown: Vec<String>,
    /// How a step starts in [`Executor::shown`] (`would run: `).
    pub show_as: &'static str,
}

/// What a list of steps did.
#[derive(Debug, Default)]
pub struct Ran {
    /// The steps done (or, in dry-run, that would run), as shown.
    pub done: Vec<String>,
    /// Best-effort steps that failed.
    pub warnings: Vec<String>,
    /// The step that failed and stopped the ones after it.
    pub failure: Option<StepFailure>,
}

/// A step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StepFailure {
    /// Its place in the list (0-based).
    pub index: usize,
    /// The command as shown (`[pve2] zfs ...`).
    pub shown: String,
    /// One line: the command and why it failed.
    pub message: String,
    pub cause: Cause,
}

/// Why a step failed.
#[derive(Debug)]
pub enum Cause {
    /// It ran and exited non-zero.
    Failed { code: Option<i32>, stderr: String },
    /// It could not run to its end (spawn, deadline).
    Run(RunError),
}

impl<'a, R: Runner> Executor<'a, R> {
    pub fn new(runner: &'a R, dry_run: bool, command_timeout: Duration) -> Self {
        Executor {
            runner,
            dry_run,
            command_timeout,
            transfer_timeout: command_timeout,
            shown: Vec::new(),
            show_as: "would run: ",
        }
    }

    /// The same executor, showing its steps as `prefix<command>`.
    pub fn showing(mut self, prefix: &'static str) -> Self {
        self.show_as = prefix;
        self
    }

    /// The same executor, with a deadline for steps that move data.
    pub fn with_transfer_timeout(mut self, t: Duration) -> Self {
        self.transfer_timeout = t;
        self
    }

    /// Carry out `steps` on `side` in order: the first failure of a step
    /// that is not best-effort stops the rest. In dry-run, show them.
    pub async fn run(&mut self, side: Side<'_>, steps: &[Step]) -> Ran {
        self.carry_out(side, steps, &BTreeSet::new(), false).await
    }

    /// Like [`Executor::run`], for a plan that may have run before (resolve,
    /// adopt): `roots` is listed once first, and the steps whose effect is
    /// already there are skipped, from the start on, so a plan run again
    /// after a failure finishes it.
    pub async fn resume(&mut self, side: Side<'_>, roots: &[String], steps: &[Step]) -> Ran {
        if self.dry_run {
            return self.carry_out(side, steps, &BTreeSet::new(), true).await;
        }
        let list = Op::ListNames {
            roots: roots.to_vec(),
        };
        let failed = |message: String, cause| Ran {
            failure: Some(StepFailure {
                index: 0,
                shown: side.show(&list),
                message,
                cause,
            }),
            ..Ran::default()
        };
        let names: BTreeSet<String> = match self
            .runner
            .output(&side.cmd(&list), self.command_timeout)
            .await
        {
            Ok(o) if o.success() => o.stdout.lines().map(str::to_string).collect(),
            Ok(o) => {
                return failed(
                    format!("`{}` failed: {}", side.show(&list), stderr_head(&o.stderr)),
                    Cause::Failed {
                        code: o.status.code(),
                        stderr: o.stderr,
                    },
                );
            }
            Err(e) => return failed(format!("`{}`: {e}", side.show(&list)), Cause::Run(e)),
        };
        let ran = self.carry_out(side, steps, &names, true).await;
        if let Some(f) = &ran.failure {
            error!(
                "stopped at step {} of {}: {f}; the {} step(s) before it were done, none after it ran; run the same command again to finish it",
                f.index + 1,
                steps.len(),
                ran.done.len()
            );
        }
        ran
    }

    /// `loud`: each step is logged at info (an operator's command), else at
    /// debug (a role change logs its summary itself).
    async fn carry_out(
        &mut self,
        side: Side<'_>,
        steps: &[Step],
        names: &BTreeSet<String>,
        loud: bool,
    ) -> Ran {
        let mut ran = Ran::default();
        // Steps found done are skipped only from the start on: once one step
        // runs, the names listed before it say nothing about the steps after
        // it (a rename frees a name a later clone takes again).
        let mut resuming = true;
        for (i, s) in steps.iter().enumerate() {
            let shown = side.show(&s.op);
            if self.dry_run {
                let flag = if s.destructive { "DESTRUCTIVE: " } else { "" };
                self.shown.push(format!("{}{flag}{shown}", self.show_as));
                ran.done.push(format!("{}{shown}", self.show_as));
                continue;
            }
            if resuming && has_check(&s.op) {
                if already_done(&s.op, names) {
                    info!("step {}: {shown}: already done", i + 1);
                    ran.done.push(format!("{shown} (already done)"));
                    continue;
                }
                resuming = false;
            }
            if s.destructive {
                warn!("DESTRUCTIVE step {}: {shown} ({})", i + 1, s.note);
            } else if loud {
                info!("step {}: {shown}", i + 1);
            } else {
                debug!("step {}: {shown}", i + 1);
            }
            // A copy moves data: it gets the transfer deadline, not a command's.
            let limit = if matches!(s.op, Op::CopyLocal { .. }) {
                self.transfer_timeout
            } else {
                self.command_timeout
            };
            let failure = match self.runner.output(&side.cmd(&s.op), limit).await {
                Ok(o) if o.success() => None,
                Ok(o) if already_so(&s.op, &o.stderr) => None,
                Ok(o) => Some((
                    format!("`{shown}` failed: {}", stderr_head(&o.stderr)),
                    Cause::Failed {
                        code: o.status.code(),
                        stderr: o.stderr,
                    },
                )),
                Err(e) => Some((format!("`{shown}`: {e}"), Cause::Run(e))),
            };
            match failure {
                None => ran.done.push(shown),
                Some((message, _)) if s.best_effort => {
                    warn!("step {} (best effort): {message}", i + 1);
                    ran.warnings.push(message);
                }
                Some((message, cause)) => {
                    ran.failure = Some(StepFailure {
                        index: i,
                        shown,
                        message,
                        cause,
                    });
                    return ran;
                }
            }
        }
        ran
    }
}

/// Is `op` already done, as `names` (every dataset and snapshot of the
/// side, as listed before the steps ran) show? What makes a resolve or an
/// adopt resumable: a step that ran (or half ran) before is recognised
/// from the real state and not run again.
fn already_done(op: &Op, names: &std::collections::BTreeSet<String>) -> bool {
    match op {
        Op::CreateContainer { dataset, .. } => names.contains(dataset),
        Op::Snapshot { snapshot, .. } => names.contains(snapshot),
        Op::SnapshotMany { snapshots } => snapshots.iter().all(|s| names.contains(s)),
        // The quarantine's name is new to this resolve: its existence is
        // the rename's (the live name may exist again: the clone's).
        Op::Rename { to, .. } => names.contains(to),
        Op::Clone { target, .. } => names.contains(target),
        Op::CopyLocal {
            snapshot, target, ..
        } => snapshot
            .split_once('@')
            .is_some_and(|(_, snap)| names.contains(&format!("{target}@{snap}"))),
        _ => false,
    }
}

/// Steps that cannot simply run twice, and whose effect a listing shows;
/// the others run again harmlessly (a hold, a mount, a property).
fn has_check(op: &Op) -> bool {
    matches!(
        op,
        Op::CreateContainer { .. }
            | Op::Snapshot { .. }
            | Op::SnapshotMany { .. }
            | Op::Rename { .. }
            | Op::Clone { .. }
            | Op::CopyLocal { .. }
    )
}

/// Errors that mean the step's effect is already there.
fn already_so(op: &Op, stderr: &str) -> bool {
    let e = stderr.to_ascii_lowercase();
    match op {
        Op::Hold { .. } | Op::HoldRecursive { .. } => e.contains("tag already exists"),
        Op::Promote { .. } => e.contains("not a cloned filesystem"),
        Op::Mount { .. } => e.contains("already mounted"),
        Op::Unmount { .. } => e.contains("not currently mounted"),
        _ => false,
    }
}
