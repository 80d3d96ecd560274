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
    let mut once = cfg.clone();
    once.checks.count = 1;
    let d = pve::decide(&once, Purpose::Run).await;
    let answer = Answer::of(&d, crate::handover::expected_from(&cfg.paths.run_dir));
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
