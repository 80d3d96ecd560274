//! `zfs-nfs-replica role --json [--asked-by NODE]`: this node's own answer
//! to "who is master?" (one master check against its own API), asked by a
//! peer over ssh before it writes into this node (`crate::pve::Answer`).
//! Always exits 0 when it could answer; the answer says what it is.

use tracing::warn;

use crate::cli::RoleArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::pve::Answer;
use crate::pve::{self, Purpose};

pub async fn role(cfg: &Config, args: &RoleArgs) -> Exit {
    let answer = answer_now(cfg).await;
    if let Some(asker) = &args.asked_by
        && let Err(why) = answer.allows(asker)
    {
        warn!("{asker} asked to write into this node: refused: {why}");
    }
    if args.json {
        match serde_json::to_string(&answer) {
            Ok(j) => crate::outln!("{j}"),
            Err(e) => {
                warn!("{e}");
                return Exit::Internal;
            }
        }
    } else {
        crate::outln!(
            "{}: {}{}",
            answer.node,
            answer.role,
            match (&answer.master, &answer.reason) {
                (Some(m), _) if answer.role == crate::report::RoleName::Standby =>
                    format!(" ({m} is master)"),
                (_, Some(r)) => format!(" ({r})"),
                _ => String::new(),
            }
        );
    }
    Exit::Ok
}

/// This node's answer now: one master check against its own API. Recorded
/// (`<run_dir>/role-answer.json`) for `serve`, which guards every write
/// with a fresh enough answer of its own.
pub async fn answer_now(cfg: &Config) -> Answer {
    let mut once = cfg.clone();
    once.checks.count = 1;
    let d = pve::decide(&once, Purpose::Run).await;
    let answer = Answer::of(&d, crate::handover::expected_from(&cfg.paths.run_dir));
    let rec = Recorded {
        at: crate::units::epoch_now(),
        answer: answer.clone(),
    };
    if let Err(e) = crate::files::save_json(&recorded_path(cfg), &rec) {
        warn!("{e}");
    }
    answer
}

/// The answer recorded within `max_age`, or a new one. The handover this
/// node waits for is always read anew.
pub async fn fresh_answer(cfg: &Config, max_age: std::time::Duration) -> Answer {
    let now = crate::units::epoch_now();
    match crate::files::load_json::<Recorded>(&recorded_path(cfg)) {
        Ok(Some(r)) if r.at <= now && now - r.at <= max_age.as_secs() => Answer {
            handover_from: crate::handover::expected_from(&cfg.paths.run_dir),
            ..r.answer
        },
        _ => answer_now(cfg).await,
    }
}

/// Drop the recorded answer (this node's role is changing: `pre-start`).
pub fn forget_answer(cfg: &Config) {
    let _ = std::fs::remove_file(recorded_path(cfg));
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Recorded {
    /// Seconds since the epoch.
    at: u64,
    answer: Answer,
}

fn recorded_path(cfg: &Config) -> std::path::PathBuf {
    cfg.paths.run_dir.join("role-answer.json")
}
