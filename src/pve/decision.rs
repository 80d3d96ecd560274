//! The outcome of the master checks, and the answer a node gives a peer that
//! is about to write into it. Decided in [`super::decide`]; what each role
//! does to the node is in [`crate::role`].

use crate::report::RoleName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This node hosts the guest: it takes snapshots and replicates.
    Master,
    /// Another node is master.
    Standby { master: String },
    /// The checks could not agree: do nothing.
    Unsure { reason: String },
}

/// The outcome of the master checks: which node this is, and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub local: String,
    pub role: Role,
    /// The guest's HA service id (`ct:103`), when the checks agreed and HA
    /// manages it: what the failover policy asks HA to move or stop.
    pub ha_sid: Option<String>,
}

impl Role {
    /// The role's name, as the files and answers write it.
    pub fn name(&self) -> RoleName {
        match self {
            Role::Master => RoleName::Master,
            Role::Standby { .. } => RoleName::Standby,
            Role::Unsure { .. } => RoleName::Unsure,
        }
    }
}

impl Decision {
    /// The master node, when the checks agreed on one.
    pub fn master(&self) -> Option<&str> {
        match &self.role {
            Role::Master => Some(&self.local),
            Role::Standby { master } => Some(master),
            Role::Unsure { .. } => None,
        }
    }
}

/// A node's own answer to "who is master?", given to a peer that is about
/// to write into it (`zfs-nfs-replica role --json`): a node writes into a
/// peer only when the peer, by its own checks, is a standby of the writer,
/// or is waiting for exactly this writer's handover. Two nodes whose checks
/// both said "master" at the same moment then write into neither.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub node: String,
    pub role: RoleName,
    pub master: Option<String>,
    pub reason: Option<String>,
    /// The node whose handover this node is waiting for (its `pre-start`).
    pub handover_from: Option<String>,
}

impl Answer {
    pub fn of(d: &Decision, handover_from: Option<String>) -> Answer {
        Answer {
            node: d.local.clone(),
            role: d.role.name(),
            master: d.master().map(str::to_string),
            reason: match &d.role {
                Role::Unsure { reason } => Some(reason.clone()),
                _ => None,
            },
            handover_from,
        }
    }

    /// May `writer` write into this node? Why not, in one line.
    pub fn allows(&self, writer: &str) -> Result<(), String> {
        if self.handover_from.as_deref() == Some(writer) {
            return Ok(());
        }
        match (self.role, self.master.as_deref()) {
            (RoleName::Standby, Some(m)) if m == writer => Ok(()),
            (RoleName::Standby, Some(m)) => Err(format!(
                "{} says {m} is master, not {writer}: not writing into it",
                self.node
            )),
            (RoleName::Master, _) => Err(format!(
                "{} says it is master itself (its own checks): not writing into it",
                self.node
            )),
            _ => Err(format!(
                "{} cannot tell who is master ({}): not writing into it",
                self.node,
                self.reason.as_deref().unwrap_or("no reason given")
            )),
        }
    }

    /// May anyone write into this node now (the receiver's own guard,
    /// `serve`)? Only a standby that knows its master, or a node waiting for
    /// a handover. A node that believes it is master, or cannot tell,
    /// receives nothing.
    pub fn accepts_writes(&self) -> Result<(), String> {
        if self.handover_from.is_some() {
            return Ok(());
        }
        match (self.role, self.master.as_deref()) {
            (RoleName::Standby, Some(m)) if m != self.node => Ok(()),
            (RoleName::Master, _) => Err(format!(
                "{} is master by its own checks: it receives nothing",
                self.node
            )),
            _ => Err(format!(
                "{} cannot tell who is master ({}): it receives nothing",
                self.node,
                self.reason.as_deref().unwrap_or("no reason given")
            )),
        }
    }
}
