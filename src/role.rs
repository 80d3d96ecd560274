//! Who is master. This is the seam where the Proxmox checks plug in: `run`
//! asks a [`RoleSource`] and replicates only when the answer is `Master`.

use std::future::Future;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// This node hosts the guest: it takes snapshots and replicates.
    Master,
    /// Another node is master.
    Standby { master: String },
    /// The checks could not agree: do nothing.
    Unsure { reason: String },
}

pub trait RoleSource {
    fn decide(&self, local_node: &str) -> impl Future<Output = Role>;
}

/// Treat this node as master (`run --assume-master`; until the Proxmox
/// checks exist, the only source).
pub struct AssumeMaster;

impl RoleSource for AssumeMaster {
    async fn decide(&self, _local_node: &str) -> Role {
        Role::Master
    }
}
