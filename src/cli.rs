//! The command line, defined once: parsing, `--help`, and (later) completions
//! and the man page come from here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_PATH;

#[derive(Debug, Parser)]
#[command(name = "zfs-nfs-replica", version, about = "Keep the ZFS pools of a Proxmox VE cluster replicated, active-passive, behind an HA NFS container.", after_help = crate::exit::TABLE)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short = 'c', global = true, default_value = DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,
    /// More log output (-v debug, -vv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate every configured pool from this node (the master) to the other nodes.
    #[command(after_help = crate::exit::TABLE)]
    Run(RunArgs),
    /// Validate the configuration, ask the Proxmox API once, reach every peer
    /// and list the pools on both sides. Exit 0: all good; 2: the config (or
    /// this node's name); 3: a peer unreachable over ssh; 4: the master
    /// check failed, or a pool is missing or unhealthy on some node.
    #[command(
        after_help = "Exit codes:\n  0  all good\n  2  configuration error\n  3  a peer is unreachable over ssh\n  4  the master check failed, or a pool is missing or unhealthy"
    )]
    Check,
    /// The size history the guards compare against.
    History(HistoryArgs),
    /// List every dataset whose standby copy diverged from the master (or
    /// has no snapshot in common with it), with the evidence. Exit 0: none;
    /// 4: some need `resolve`.
    #[command(after_help = crate::exit::TABLE)]
    Diverged,
    /// On the master: keep a diverged standby dataset's own state in the
    /// quarantine, so the next run re-syncs it from the common snapshot.
    #[command(after_help = crate::exit::TABLE)]
    Resolve(ResolveArgs),
    /// On the master: take over a standby made by the old script (syncoid)
    /// after checking that it holds nothing the master lacks; it becomes a
    /// read-only standby.
    #[command(after_help = crate::exit::TABLE)]
    Adopt(AdoptArgs),
    /// What the last run did, from local state only (works when the peer or
    /// the API is down): a table, `--json`, or a Nagios-style `--check`.
    Status(StatusArgs),
    /// Write the man page, shell completions and the packaged (commented)
    /// config into DIR (used when building the Debian package).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
    /// Proxmox hookscript entry (`pre-start` takes the old master's last
    /// writes after a planned migration, then promotes this node). Always
    /// exits 0: it never fails the guest's start.
    #[command(
        after_help = "Exit codes:\n  0  always: the hook never fails the guest's start (what happened is logged and recorded)"
    )]
    Hook(HookArgs),
    /// This node's own answer to "who is master?" (one master check), for a
    /// peer about to write into it.
    Role(RoleArgs),
    /// On the old master, asked by the node the guest moved to: send the
    /// last writes there before the guest starts (README: Migrations).
    #[command(after_help = crate::exit::TABLE)]
    Handover(HandoverArgs),
    /// Make this node a standby now, asking no one: sanoid stops
    /// snapshotting the managed datasets and they become read-only. Run at
    /// boot, before sanoid and the guests (zfs-nfs-replica-boot.service): a
    /// node coming back does not know yet who is master.
    #[command(after_help = crate::exit::TABLE)]
    Standby,
    /// The replication key's forced command (`command="/usr/bin/zfs-nfs-replica
    /// serve",restrict` in a peer's `authorized_keys`): runs one request of
    /// a peer (from `SSH_ORIGINAL_COMMAND`, or REQUEST with a full shell),
    /// checked against this node's config; writes only while this node is a
    /// standby by its own checks. Exit 6: refused.
    #[command(after_help = crate::exit::TABLE)]
    Serve(ServeArgs),
    /// Print the `authorized_keys` line for the peers: the replication key
    /// (`[ssh] identity` + `.pub`, or PUBKEY) behind the forced command.
    AuthorizedKey(AuthorizedKeyArgs),
}

#[derive(Debug, Args)]
pub struct AuthorizedKeyArgs {
    /// The public key file (default: `[ssh] identity` with `.pub`).
    pub pubkey: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The request (JSON), when called through a full shell.
    pub request: Option<String>,
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    /// As JSON (what the peers read).
    #[arg(long)]
    pub json: bool,
    /// The node asking (logged when it may not write here).
    #[arg(long, value_name = "NODE")]
    pub asked_by: Option<String>,
}

#[derive(Debug, Args)]
pub struct HandoverArgs {
    /// The node the guest moved to.
    #[arg(long, value_name = "NODE")]
    pub to: String,
    /// The time the new node gives this handover (e.g. "10m").
    #[arg(long, value_name = "DURATION", value_parser = parse_dur)]
    pub within: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The guest id Proxmox passes.
    pub vmid: u32,
    /// `pre-start`, `post-start`, `pre-stop` or `post-stop`.
    pub phase: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Show every dataset's decision and the exact commands, change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Only this pool (repeatable); default: every configured pool.
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,
    /// Allow `zfs receive -F` over receiver datasets that exist without any
    /// snapshot and hold (almost) nothing, e.g. a new standby pool's root.
    /// Off by default: it replaces that dataset.
    #[arg(long)]
    pub overwrite_empty_target: bool,
    /// Replicate POOL even though its sizes changed more than the size
    /// guards allow (this run only; logged). Repeatable.
    #[arg(long = "accept-size-change", value_name = "POOL")]
    pub accept_size_change: Vec<String>,
    /// Set by `handover`, never on the command line: a planned migration's
    /// last increments (the size guards waive a same-dataset shrink).
    #[arg(skip)]
    pub handover: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The same facts as JSON (README: status schema).
    #[arg(long, conflicts_with = "check")]
    pub json: bool,
    /// One line for monitoring systems; exit 0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN.
    #[arg(long)]
    pub check: bool,
    /// Override `[status] warn_lag` (e.g. "90m").
    #[arg(long, value_name = "DURATION", value_parser = parse_dur)]
    pub warn_lag: Option<std::time::Duration>,
    /// Override `[status] crit_lag`.
    #[arg(long, value_name = "DURATION", value_parser = parse_dur)]
    pub crit_lag: Option<std::time::Duration>,
}

fn parse_dur(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The diverged dataset, by its name on the master (e.g. `zpool1/data`).
    pub dataset: String,
    /// Required: keep the receiver's divergent state (snapshots and writes)
    /// in the quarantine. The only way `resolve` works; nothing is dropped.
    #[arg(long, required = true)]
    pub keep_divergent: bool,
    /// Show the evidence and every step, run nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// The standby to act on (needed with more than one).
    #[arg(long, value_name = "NODE")]
    pub peer: Option<String>,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The configured pool whose standby copy to adopt.
    pub pool: String,
    /// Show the checks and every step, run nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// The standby to adopt (needed with more than one).
    #[arg(long, value_name = "NODE")]
    pub peer: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: HistoryAction,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// Record both sides' current sizes as POOL's history (after a corrupt
    /// history file was moved aside, or to start over).
    Rebuild {
        /// The configured pool.
        pool: String,
    },
}
