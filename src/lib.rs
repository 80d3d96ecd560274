//! zfs-nfs-replica: active-passive replication of whole ZFS pools between
//! Proxmox VE nodes, following the node that hosts an HA-managed guest.

pub mod adopt;
pub mod cli;
pub mod cmdline;
pub mod commands;
pub mod config;
pub mod engine;
pub mod execute;
pub mod exit;
pub mod failover;
pub mod files;
pub mod guard;
pub mod handover;
pub mod health;
pub mod history;
pub mod interrupt;
pub mod lock;
pub mod logging;
pub mod notify;
pub mod plan;
pub mod progress_bar;
pub mod pve;
pub mod quarantine;
pub mod report;
pub mod resolve;
pub mod role;
pub mod runner;
pub mod sanoid;
pub mod serve;
pub mod side;
pub mod ssh;
pub mod state;
pub mod status;
pub mod stdout;
pub mod step;
#[cfg(test)]
pub mod testutil;
pub mod units;
pub mod zfs;
