//! A plan's items as the commands that carry them out (`zfs send | zfs
//! receive` pairs), and how a plan is shown to people in dry-run.

use std::fmt::Write as _;

use super::Engine;
use super::noise::discard_op;
use crate::plan::{Action, Item, Plan};
use crate::report::{DatasetReport, DatasetResult};
use crate::runner::Runner;
use crate::side::Side;
use crate::units::human_bytes;
use crate::zfs::{Op, RecvSpec, SendFrom, SendSpec};

impl<R: Runner> Engine<'_, R> {
    pub(super) fn steps(&self, item: &Item) -> Vec<(Op, Op)> {
        let recv = |force| {
            Op::Recv(RecvSpec {
                dataset: item.target.clone(),
                force,
            })
        };
        let snap = |s: &str| format!("{}@{}", item.source, s);
        let props = self.settings.send_properties;
        match &item.action {
            Action::Full {
                first,
                last,
                raw,
                force,
            } => {
                let mut v = vec![(
                    Op::Send(SendSpec {
                        snapshot: snap(&first.name),
                        from: SendFrom::Full,
                        raw: *raw,
                        properties: props,
                    }),
                    recv(*force),
                )];
                if last.guid != first.guid {
                    v.push((
                        Op::Send(SendSpec {
                            snapshot: snap(&last.name),
                            from: SendFrom::Incremental {
                                base: snap(&first.name),
                            },
                            raw: *raw,
                            properties: props,
                        }),
                        recv(false),
                    ));
                }
                v
            }
            Action::Incremental {
                base, last, raw, ..
            } => vec![(
                Op::Send(SendSpec {
                    snapshot: snap(&last.name),
                    from: SendFrom::Incremental {
                        base: snap(&base.name),
                    },
                    raw: *raw,
                    properties: props,
                }),
                recv(false),
            )],
            Action::Resume { token } => vec![(
                Op::SendResume {
                    token: token.clone(),
                },
                recv(false),
            )],
            _ => Vec::new(),
        }
    }

    pub(super) fn show_plan(&mut self, plan: &Plan, remote: Side<'_>) {
        for item in &plan.items {
            let line = format!("  {:<40} {}", item.source, describe(&item.action));
            self.shown.push(line);
            if let Some(op) = discard_op(item) {
                self.shown.push(format!(
                    "      DESTRUCTIVE (discards what changed no file or block): {}",
                    remote.show(&op)
                ));
            }
            for (send, recv) in self.steps(item) {
                let flag = if matches!(recv, Op::Recv(RecvSpec { force: true, .. })) {
                    "DESTRUCTIVE (recv -F replaces the receiver dataset): "
                } else {
                    ""
                };
                self.shown.push(format!(
                    "      {flag}{} | {}",
                    Side::Local.show(&send),
                    remote.show(&recv)
                ));
            }
        }
        for r in &plan.receiver_only {
            self.shown.push(format!(
                "  {r:<40} only on the receiver: kept, never destroyed"
            ));
        }
    }
}

pub(super) fn dry_result(item: &Item) -> DatasetReport {
    let result = match &item.action {
        Action::UpToDate { .. } => DatasetResult::UpToDate,
        Action::Conflict(c) => DatasetResult::Conflict(c.to_string()),
        a if a.is_transfer() => DatasetResult::Planned(describe(a)),
        a => DatasetResult::Skipped(describe(a)),
    };
    DatasetReport {
        source: item.source.clone(),
        target: item.target.clone(),
        result,
    }
}

/// One line per decision, for people.
pub fn describe(a: &Action) -> String {
    match a {
        Action::UpToDate { snapshot } => format!("up to date at @{}", snapshot.name),
        Action::NoSnapshots => "no snapshot to send yet".into(),
        Action::Excluded => "excluded".into(),
        Action::Full {
            first, last, force, ..
        } => {
            let mut s = format!("full send of @{}", first.name);
            if first.guid != last.guid {
                let _ = write!(s, ", then incremental to @{}", last.name);
            }
            if *force {
                s.push_str(" [DESTRUCTIVE: replaces the empty receiver dataset]");
            }
            s
        }
        Action::Incremental {
            base,
            last,
            count,
            discard,
            ..
        } => {
            let mut s = format!(
                "incremental @{} -> @{} ({count} snapshot(s))",
                base.name, last.name
            );
            if let Some(d) = discard {
                let _ = write!(
                    s,
                    " [DESTRUCTIVE: first rolls the receiver back to @{}: its {} written since are no change ({})]",
                    base.name,
                    human_bytes(d.written),
                    d.evidence
                );
            }
            s
        }
        Action::Resume { .. } => "resume the interrupted receive".into(),
        Action::Conflict(c) => format!("CONFLICT {}: {c}", c.kind()),
        Action::Blocked { by, reason } => format!("blocked by {by}: {reason}"),
    }
}
