//! Where a command runs: here, or on a peer over ssh. Every command the tool
//! runs is a value ([`Op`]) and a side; the side turns it into the command
//! line to run and the line to show people.

use crate::cmdline::Cmd;
use crate::ssh::Peer;
use crate::zfs::Op;

/// Where an operation runs.
#[derive(Clone, Copy)]
pub enum Side<'a> {
    Local,
    Remote(&'a Peer),
}

impl Side<'_> {
    pub fn cmd(&self, op: &Op) -> Cmd {
        match self {
            Side::Local => op.to_cmd(),
            Side::Remote(p) => p.request(op),
        }
    }

    /// How the operation is shown to people: `zfs ...` or `[pve2] zfs ...`.
    pub fn show(&self, op: &Op) -> String {
        match self {
            Side::Local => op.to_string(),
            Side::Remote(p) => format!("[{}] {op}", p.name),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Side::Local => "local".into(),
            Side::Remote(p) => p.name.clone(),
        }
    }
}
