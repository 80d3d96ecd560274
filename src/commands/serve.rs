//! `zfs-nfs-replica serve`: the replication key's forced command. Reads one
//! request (`crate::serve`), holds it against this node's config, guards
//! every write with this node's own answer to "who is master?", then runs
//! the operation in place of this process (`exec`: the stream, the exit
//! code and the signals are the `zfs` command's own).

use std::os::unix::process::CommandExt;
use std::time::Duration;

use tracing::{debug, error};

use crate::cli::{HandoverArgs, RoleArgs, ServeArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::serve::{self, Access, Allowed};
use crate::zfs::Op;

/// How old this node's recorded answer may be to guard a write. The master
/// asks the role right before it writes; a longer run asks anew.
pub const ANSWER_MAX_AGE: Duration = Duration::from_secs(60);

pub async fn serve(cfg: &Config, args: &ServeArgs) -> Exit {
    let forced = std::env::var_os("SSH_ORIGINAL_COMMAND");
    let op = match (&forced, &args.request) {
        (Some(line), _) => match line.to_str() {
            Some(line) => serve::parse_line(line),
            None => Err(serve::Refused("the request is not valid UTF-8".into())),
        },
        (None, Some(json)) => serve::parse_json(json),
        (None, None) => Err(serve::Refused(
            "no request (this key may only run zfs-nfs-replica requests)".into(),
        )),
    };
    let (op, access) = match op.and_then(|op| serve::check(&op, &allowed(cfg)).map(|a| (op, a))) {
        Ok(x) => x,
        Err(e) => return refuse(&e.to_string()),
    };
    if access == Access::Write {
        let answer = super::role::fresh_answer(cfg, ANSWER_MAX_AGE).await;
        if let Err(why) = answer.accepts_writes() {
            return refuse(&format!("{} refused: {why}", op.name()));
        }
    }
    // Not on stderr by default: that is the asking node's channel.
    debug!(
        "serving {}{}",
        op,
        if forced.is_some() {
            ""
        } else {
            " (full shell)"
        }
    );
    match op {
        Op::Role { asked_by } => {
            super::role::role(
                cfg,
                &RoleArgs {
                    json: true,
                    asked_by: Some(asked_by),
                },
            )
            .await
        }
        Op::Handover { to, within } => {
            super::handover::handover(
                cfg,
                &HandoverArgs {
                    to,
                    within: Duration::from_secs(within),
                },
            )
            .await
        }
        other => {
            let c = other.to_cmd();
            let e = std::process::Command::new(&c.program).args(&c.args).exec();
            error!("cannot run {}: {e}", c.program);
            Exit::Transient
        }
    }
}

fn refuse(why: &str) -> Exit {
    error!("serve: refused: {why}");
    Exit::ServeRefused
}

/// What this node's config lets a peer touch.
pub fn allowed(cfg: &Config) -> Allowed {
    let mut roots = Vec::new();
    let mut zpools = Vec::new();
    for p in &cfg.pools {
        for r in [p.name.as_str(), p.target()] {
            if !roots.iter().any(|x| x == r) {
                roots.push(r.to_string());
            }
            let z = crate::config::pool_of(r).to_string();
            if !zpools.contains(&z) {
                zpools.push(z);
            }
        }
    }
    let nodes: Vec<String> = cfg.cluster.nodes.keys().map(|n| n.to_string()).collect();
    let mut tags: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{n}", cfg.replication.hold_tag.as_str()))
        .collect();
    tags.push(crate::quarantine::HOLD_TAG.to_string());
    Allowed {
        roots,
        zpools,
        nodes,
        tags,
    }
}
