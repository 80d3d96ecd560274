//! The replication key's forced command, pure part: the request a node
//! sends to a peer, how it is written on the ssh command line, and what the
//! peer accepts.
//!
//! A request is one [`Op`] (the same values the engine builds), as JSON,
//! in one shell word: `zfs-nfs-replica serve '{"v":1,"op":{...}}'`. With a
//! full shell the peer's shell runs exactly that; with the restricted key
//! (`command="/usr/bin/zfs-nfs-replica serve",restrict` in
//! `authorized_keys`) sshd runs `serve` and hands the line over in
//! `SSH_ORIGINAL_COMMAND`, which [`parse_line`] reads strictly: no shell
//! ever interprets it. [`check`] then holds the operation against the
//! node's own config: names inside the configured pools, our own hold
//! tags, known nodes, no operation the replication never asks a peer for.

use serde::{Deserialize, Serialize};

use crate::zfs::Op;
use crate::zfs::names::{self, is_at_or_below};

/// The program and subcommand every request starts with.
pub const PREFIX: &str = "zfs-nfs-replica serve ";
/// The wire format's version.
pub const VERSION: u32 = 1;
/// Longer requests are refused (the longest real one, a hold of every
/// dataset's snapshot, is a few KiB).
pub const MAX_LEN: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub v: u32,
    pub op: Op,
}

/// Why a request was refused, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// One line, whatever the request held.
fn refused(why: impl Into<String>) -> Refused {
    let why: String = why.into();
    Refused(
        why.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// What a request may do on the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads only.
    Read,
    /// Writes into the node's pools: only while the node is a standby (or
    /// waits for a handover), by its own checks.
    Write,
    /// Runs one of our own commands, which checks its own role (`role`,
    /// `handover`), or only stops our own receives.
    Own,
}

/// The command line that asks a peer for `op`.
pub fn line(op: &Op) -> String {
    let req = Request {
        v: VERSION,
        op: op.clone(),
    };
    // Serialising plain data cannot fail; keep a readable fallback anyway.
    let json = serde_json::to_string(&req).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    format!("{PREFIX}{}", crate::cmdline::shell_quote(&json))
}

/// Read a request line exactly as [`line`] writes it: the prefix, then one
/// shell word made only of single-quoted runs and `\'`.
pub fn parse_line(s: &str) -> Result<Op, Refused> {
    if s.len() > MAX_LEN {
        return Err(refused(format!(
            "request longer than {MAX_LEN} bytes ({})",
            s.len()
        )));
    }
    if s.contains('\0') {
        return Err(refused("request contains a NUL byte"));
    }
    let Some(word) = s.strip_prefix(PREFIX) else {
        let head: String = s.chars().take(60).collect();
        return Err(refused(format!(
            "not a zfs-nfs-replica request: `{}`{} (this key may only run `zfs-nfs-replica serve`)",
            head.escape_debug(),
            if s.chars().count() > 60 { "…" } else { "" }
        )));
    };
    let json = unquote(word)?;
    parse_json(&json)
}

/// The request's JSON, strictly: known operations and fields only.
pub fn parse_json(json: &str) -> Result<Op, Refused> {
    let req: Request =
        serde_json::from_str(json).map_err(|e| refused(format!("malformed request: {e}")))?;
    if req.v != VERSION {
        return Err(refused(format!(
            "request version {} (this node speaks {VERSION}): update zfs-nfs-replica on both nodes",
            req.v
        )));
    }
    Ok(req.op)
}

/// One shell word as [`crate::cmdline::shell_quote`] writes it: bare safe
/// characters, or single-quoted runs joined by `\'`. Anything else (spaces
/// outside quotes, `$`, `;`, backticks, double quotes) is refused.
fn unquote(word: &str) -> Result<String, Refused> {
    let bad = || refused("the request is not one single-quoted word");
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'').ok_or_else(bad)?;
            out.push_str(&r[..end]);
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix("\\'") {
            out.push('\'');
            rest = r;
        } else {
            let n = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_-./:@%+,=".contains(c)))
                .unwrap_or(rest.len());
            if n == 0 {
                return Err(bad());
            }
            out.push_str(&rest[..n]);
            rest = &rest[n..];
        }
    }
    Ok(out)
}

/// What `op` may do on the peer; None: never asked of a peer, refused.
pub fn access(op: &Op) -> Option<Access> {
    Some(match op {
        Op::List { .. }
        | Op::ListDatasets { .. }
        | Op::ListFast { .. }
        | Op::ListChanges { .. }
        | Op::ListSnapshotsOf { .. }
        | Op::Details { .. }
        | Op::Holds { .. }
        | Op::PoolList { .. }
        | Op::ZpoolStatus { .. }
        | Op::RoleProps { .. }
        | Op::ListNames { .. }
        | Op::Diff { .. }
        // Read-only in effect: a moment's probe snapshot, destroyed again.
        | Op::ChangedSince { .. } => Access::Read,
        Op::Recv(_)
        | Op::RecvAbort { .. }
        | Op::Hold { .. }
        | Op::Release { .. }
        | Op::Mount { .. }
        | Op::Unmount { .. }
        | Op::Snapshot { .. }
        | Op::HoldRecursive { .. }
        | Op::CreateContainer { .. }
        | Op::Rename { .. }
        | Op::InheritMountpoint { .. }
        | Op::SetReadonly { .. }
        | Op::Clone { .. }
        | Op::Promote { .. }
        | Op::Rollback { .. }
        | Op::SnapshotMany { .. }
        | Op::CopyLocal { .. } => Access::Write,
        Op::Role { .. } | Op::Handover { .. } | Op::StopReceives { .. } => Access::Own,
        // A peer never sends from here (every transfer is pushed by the
        // master), and never makes this node writable.
        Op::Send(_) | Op::SendResume { .. } | Op::RevertReadonly { .. } => return None,
    })
}

/// What this node's config lets a peer touch.
#[derive(Debug, Clone)]
pub struct Allowed {
    /// Every configured pool's dataset, as source and as target.
    pub roots: Vec<String>,
    /// Their zpools.
    pub zpools: Vec<String>,
    /// `[cluster] nodes`.
    pub nodes: Vec<String>,
    /// The hold tags of ours: `<hold_tag>:<node>` and the quarantine's.
    pub tags: Vec<String>,
}

impl Allowed {
    fn dataset(&self, name: &str) -> Result<(), Refused> {
        names::valid_dataset_name(name).map_err(|e| refused(e.to_string()))?;
        if self.roots.iter().any(|r| is_at_or_below(name, r)) {
            Ok(())
        } else {
            Err(refused(format!(
                "{name} is not in a configured pool ({})",
                self.roots.join(", ")
            )))
        }
    }

    fn snapshot(&self, name: &str) -> Result<(), Refused> {
        names::valid_snapshot_name(name).map_err(|e| refused(e.to_string()))?;
        self.dataset(name.split_once('@').map_or(name, |(d, _)| d))
    }

    fn roots_of(&self, roots: &[String]) -> Result<(), Refused> {
        if roots.is_empty() {
            return Err(refused("no dataset named"));
        }
        roots.iter().try_for_each(|r| self.dataset(r))
    }

    fn snapshots(&self, snaps: &[String]) -> Result<(), Refused> {
        if snaps.is_empty() {
            return Err(refused("no snapshot named"));
        }
        snaps.iter().try_for_each(|s| self.snapshot(s))
    }

    fn zpool(&self, pools: &[String]) -> Result<(), Refused> {
        match pools.iter().find(|p| !self.zpools.contains(p)) {
            None => Ok(()),
            Some(p) => Err(refused(format!(
                "{p} is not a configured zpool ({})",
                self.zpools.join(", ")
            ))),
        }
    }

    fn node(&self, n: &str) -> Result<(), Refused> {
        if self.nodes.iter().any(|x| x == n) {
            Ok(())
        } else {
            Err(refused(format!(
                "{} is not one of [cluster] nodes",
                n.escape_debug()
            )))
        }
    }

    fn tag(&self, t: &str) -> Result<(), Refused> {
        if self.tags.iter().any(|x| x == t) {
            Ok(())
        } else {
            Err(refused(format!(
                "hold tag {} is not one of ours",
                t.escape_debug()
            )))
        }
    }
}

/// Hold `op` against this node's config; its access class when allowed.
pub fn check(op: &Op, a: &Allowed) -> Result<Access, Refused> {
    let Some(access) = access(op) else {
        return Err(refused(format!("`{}` is never asked of a peer", op.name())));
    };
    match op {
        Op::List { roots }
        | Op::ListDatasets { roots }
        | Op::ListFast { roots }
        | Op::ListChanges { roots }
        | Op::RoleProps { roots }
        | Op::ListNames { roots } => a.roots_of(roots)?,
        Op::StopReceives { roots } => a.roots_of(roots)?,
        Op::Holds { snapshots } | Op::SnapshotMany { snapshots } => a.snapshots(snapshots)?,
        Op::ListSnapshotsOf { datasets } => {
            if datasets.is_empty() {
                return Err(refused("no dataset named"));
            }
            for d in datasets {
                a.dataset(d)?
            }
        }
        Op::Details { names } => {
            if names.is_empty() {
                return Err(refused("no dataset named"));
            }
            for n in names {
                if n.contains('@') {
                    a.snapshot(n)?
                } else {
                    a.dataset(n)?
                }
            }
        }
        Op::Hold { tag, snapshots } | Op::Release { tag, snapshots } => {
            a.tag(tag)?;
            a.snapshots(snapshots)?
        }
        Op::HoldRecursive { tag, snapshot } => {
            a.tag(tag)?;
            a.snapshot(snapshot)?
        }
        Op::PoolList { pools } | Op::ZpoolStatus { pools } => a.zpool(pools)?,
        Op::Recv(r) => a.dataset(&r.dataset)?,
        Op::RecvAbort { dataset }
        | Op::Mount { dataset }
        | Op::Unmount { dataset }
        | Op::InheritMountpoint { dataset }
        | Op::Promote { dataset } => a.dataset(dataset)?,
        Op::SetReadonly { datasets } => a.roots_of(datasets)?,
        Op::Snapshot { snapshot, .. } | Op::Rollback { snapshot, .. } => a.snapshot(snapshot)?,
        Op::CreateContainer {
            dataset,
            mountpoint,
        } => {
            a.dataset(dataset)?;
            if let Some(m) = mountpoint
                && !(m.starts_with('/')
                    && m.len() < 1024
                    && !m.split('/').any(|c| c == "..")
                    && m.chars().all(|c| c.is_ascii_graphic()))
            {
                return Err(refused(format!("mountpoint {} refused", m.escape_debug())));
            }
        }
        Op::Rename { from, to, .. } => {
            a.dataset(from)?;
            a.dataset(to)?
        }
        Op::Clone { snapshot, target } => {
            a.snapshot(snapshot)?;
            a.dataset(target)?
        }
        Op::Diff { snapshot, dataset } => {
            a.snapshot(snapshot)?;
            a.dataset(dataset)?
        }
        Op::ChangedSince {
            dataset, snapshot, ..
        } => {
            a.dataset(dataset)?;
            names::valid_snapshot_short_name(snapshot).map_err(|e| refused(e.to_string()))?
        }
        Op::CopyLocal {
            snapshot,
            base,
            target,
            ..
        } => {
            a.snapshot(snapshot)?;
            if let Some(b) = base {
                // `-I` takes `@snap` or `dataset@snap`.
                match b.strip_prefix('@') {
                    Some(short) => names::valid_snapshot_short_name(short)
                        .map_err(|e| refused(e.to_string()))?,
                    None => a.snapshot(b)?,
                }
            }
            a.dataset(target)?
        }
        Op::Role { asked_by } => a.node(asked_by)?,
        Op::Handover { to, within } => {
            a.node(to)?;
            if *within == 0 || *within > 24 * 3600 {
                return Err(refused(format!("handover deadline {within}s out of range")));
            }
        }
        Op::Send(_) | Op::SendResume { .. } | Op::RevertReadonly { .. } => {}
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::RecvSpec;

    /// As `commands::serve::allowed` reads it from a config with pools
    /// `zpool1` and `tank/share` (target `backup/share`).
    fn allowed() -> Allowed {
        let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Allowed {
            roots: v(&["zpool1", "tank/share", "backup/share"]),
            zpools: v(&["zpool1", "tank", "backup"]),
            nodes: v(&["pve1", "pve2"]),
            tags: v(&[
                "zfs-nfs-replica:pve1",
                "zfs-nfs-replica:pve2",
                crate::quarantine::HOLD_TAG,
            ]),
        }
    }

    fn ask(op: &Op) -> Result<Access, Refused> {
        check(&parse_line(&line(op))?, &allowed())
    }

    /// Every operation the replication asks of a peer goes through, and
    /// comes out as the same value.
    #[test]
    fn what_the_engine_asks_goes_through_unchanged() {
        let ops = [
            (
                Op::List {
                    roots: vec!["zpool1".into(), "backup/share".into()],
                },
                Access::Read,
            ),
            (
                Op::ListDatasets {
                    roots: vec!["zpool1".into(), "backup/share".into()],
                },
                Access::Read,
            ),
            (
                Op::ListFast {
                    roots: vec!["zpool1".into(), "backup/share".into()],
                },
                Access::Read,
            ),
            (
                Op::ListChanges {
                    roots: vec!["zpool1".into(), "backup/share".into()],
                },
                Access::Read,
            ),
            (
                Op::ListSnapshotsOf {
                    datasets: vec!["zpool1".into(), "backup/share/a b".into()],
                },
                Access::Read,
            ),
            (
                Op::Details {
                    names: vec!["zpool1".into(), "zpool1/a b@s1".into()],
                },
                Access::Read,
            ),
            (
                Op::Holds {
                    snapshots: vec!["zpool1/a@s1".into()],
                },
                Access::Read,
            ),
            (
                Op::PoolList {
                    pools: vec!["zpool1".into(), "backup".into()],
                },
                Access::Read,
            ),
            (
                Op::ZpoolStatus {
                    pools: vec!["tank".into()],
                },
                Access::Read,
            ),
            (
                Op::RoleProps {
                    roots: vec!["zpool1".into()],
                },
                Access::Read,
            ),
            (
                Op::ListNames {
                    roots: vec!["zpool1".into()],
                },
                Access::Read,
            ),
            (
                Op::ChangedSince {
                    dataset: "zpool1/a".into(),
                    snapshot: "s1".into(),
                    volume: false,
                },
                Access::Read,
            ),
            (
                Op::Recv(RecvSpec {
                    dataset: "zpool1/my data".into(),
                    force: false,
                }),
                Access::Write,
            ),
            (
                Op::RecvAbort {
                    dataset: "zpool1/a".into(),
                },
                Access::Write,
            ),
            (
                Op::Hold {
                    tag: "zfs-nfs-replica:pve1".into(),
                    snapshots: vec!["zpool1/a@s1".into()],
                },
                Access::Write,
            ),
            (
                Op::Release {
                    tag: "zfs-nfs-replica:pve2".into(),
                    snapshots: vec!["backup/share@s'1".replace('\'', "")],
                },
                Access::Write,
            ),
            (
                Op::HoldRecursive {
                    tag: crate::quarantine::HOLD_TAG.into(),
                    snapshot: "zpool1/a@q".into(),
                },
                Access::Write,
            ),
            (
                Op::Rename {
                    from: "zpool1/a".into(),
                    to: "zpool1/zfs-nfs-replica-quarantine/a".into(),
                    filesystem: true,
                },
                Access::Write,
            ),
            (
                Op::CopyLocal {
                    snapshot: "zpool1/a@s2".into(),
                    base: Some("@s1".into()),
                    raw: false,
                    target: "zpool1/b".into(),
                },
                Access::Write,
            ),
            (
                Op::CreateContainer {
                    dataset: "zpool1/q".into(),
                    mountpoint: Some("/zpool1/q".into()),
                },
                Access::Write,
            ),
            (
                Op::Role {
                    asked_by: "pve2".into(),
                },
                Access::Own,
            ),
            (
                Op::Handover {
                    to: "pve2".into(),
                    within: 600,
                },
                Access::Own,
            ),
            (
                Op::StopReceives {
                    roots: vec!["zpool1".into()],
                },
                Access::Own,
            ),
        ];
        for (op, want) in ops {
            assert_eq!(parse_line(&line(&op)), Ok(op.clone()), "{op:?}");
            assert_eq!(ask(&op), Ok(want), "{op:?}");
        }
    }

    /// At least 40 hostile `SSH_ORIGINAL_COMMAND` strings: each refused
    /// with one line, none run (invalid UTF-8 is refused before: the
    /// command reads the variable as bytes).
    #[test]
    fn hostile_requests_are_refused() {
        let json = |op: &str| format!("{PREFIX}'{{\"v\":1,\"op\":{op}}}'");
        let hostile: Vec<String> = vec![
            // Not a request at all.
            "".into(),
            "id".into(),
            "sh -c id".into(),
            "bash -i".into(),
            "zfs destroy -r zpool1".into(),
            "zfs list -H -o name".into(),
            "zfs send zpool1/a@s1".into(),
            "scp -t /root/.ssh/authorized_keys".into(),
            "rsync --server . /".into(),
            "zfs-nfs-replica run".into(),
            "zfs-nfs-replica serve".into(),
            "zfs-nfs-replica  serve '{}'".into(),
            "/usr/bin/zfs-nfs-replica serve '{}'".into(),
            // Shell tricks around a real request.
            format!("{}; rm -rf /", json("{\"List\":{\"roots\":[\"zpool1\"]}}")),
            format!("{} && id", json("{\"List\":{\"roots\":[\"zpool1\"]}}")),
            format!("{PREFIX}$(id)"),
            format!("{PREFIX}`id`"),
            format!("{PREFIX}\"{{}}\""),
            format!("{PREFIX}'{{\"v\":1}}' extra"),
            format!("{PREFIX}'unterminated"),
            format!("{PREFIX}'{{\"v\":1,\0\"op\":1}}'"),
            format!("{PREFIX}{}", "a".repeat(MAX_LEN)),
            format!("{} | sh", json("{\"List\":{\"roots\":[\"zpool1\"]}}")),
            format!("{}\nid", json("{\"List\":{\"roots\":[\"zpool1\"]}}")),
            "zfs receive -o origin=zpool1/a@s1 zpool1/x".into(),
            json("{\"Recv\":{\"dataset\":\"-o origin=zpool1/a@s1\",\"force\":false}}"),
            json("{\"Recv\":{\"dataset\":\"-x mountpoint\",\"force\":false}}"),
            // Malformed or unknown requests.
            format!("{PREFIX}'not json'"),
            json("{\"Destroy\":{\"dataset\":\"zpool1\"}}"),
            json("{\"List\":{\"roots\":[\"zpool1\"],\"extra\":1}}"),
            format!("{PREFIX}'{{\"v\":2,\"op\":{{\"List\":{{\"roots\":[\"zpool1\"]}}}}}}'"),
            format!(
                "{PREFIX}'{{\"v\":1,\"op\":{{\"List\":{{\"roots\":[\"zpool1\"]}}}},\"sudo\":true}}'"
            ),
            // Operations a peer never asks for.
            json(
                "{\"Send\":{\"snapshot\":\"zpool1/a@s1\",\"from\":\"Full\",\"raw\":false,\"properties\":false}}",
            ),
            json("{\"SendResume\":{\"token\":\"1-abc\"}}"),
            json("{\"RevertReadonly\":{\"datasets\":[\"zpool1\"]}}"),
            // Outside the configured pools.
            json("{\"List\":{\"roots\":[\"rpool\"]}}"),
            json("{\"List\":{\"roots\":[]}}"),
            json("{\"Recv\":{\"dataset\":\"rpool/ROOT/pve-1\",\"force\":true}}"),
            json("{\"Recv\":{\"dataset\":\"zpool10/a\",\"force\":false}}"),
            json("{\"Recv\":{\"dataset\":\"tank/shared\",\"force\":false}}"),
            json("{\"Rollback\":{\"snapshot\":\"rpool/data@x\",\"destroy_newer\":true}}"),
            json("{\"Rename\":{\"from\":\"zpool1/a\",\"to\":\"rpool/a\",\"filesystem\":true}}"),
            json("{\"PoolList\":{\"pools\":[\"rpool\"]}}"),
            // Option injection and bad names.
            json("{\"Recv\":{\"dataset\":\"-F\",\"force\":false}}"),
            json("{\"Recv\":{\"dataset\":\"zpool1/../rpool\",\"force\":false}}"),
            json("{\"Mount\":{\"dataset\":\"zpool1/a\\nb\"}}"),
            json("{\"Holds\":{\"snapshots\":[\"-r\"]}}"),
            json("{\"Holds\":{\"snapshots\":[\"zpool1/a\"]}}"),
            json("{\"Hold\":{\"tag\":\"-r\",\"snapshots\":[\"zpool1/a@s\"]}}"),
            json("{\"Release\":{\"tag\":\"someone-else\",\"snapshots\":[\"zpool1/a@s\"]}}"),
            json("{\"Hold\":{\"tag\":\"zfs-nfs-replica:pve9\",\"snapshots\":[\"zpool1/a@s\"]}}"),
            json("{\"Diff\":{\"snapshot\":\"zpool1/a@s;id\",\"dataset\":\"zpool1/a\"}}"),
            json(
                "{\"ChangedSince\":{\"dataset\":\"zpool1/a\",\"snapshot\":\"s1' ; id ; '\",\"volume\":false}}",
            ),
            json(
                "{\"CreateContainer\":{\"dataset\":\"zpool1/q\",\"mountpoint\":\"/etc/../root\"}}",
            ),
            json("{\"CreateContainer\":{\"dataset\":\"zpool1/q\",\"mountpoint\":\"relative\"}}"),
            json(
                "{\"CopyLocal\":{\"snapshot\":\"zpool1/a@s\",\"base\":\"@s;id\",\"raw\":false,\"target\":\"zpool1/b\"}}",
            ),
            json("{\"Role\":{\"asked_by\":\"--help\"}}"),
            json("{\"Role\":{\"asked_by\":\"pve1; id\"}}"),
            json("{\"Handover\":{\"to\":\"pve2\",\"within\":0}}"),
            json("{\"Handover\":{\"to\":\"evil\",\"within\":60}}"),
            json("{\"StopReceives\":{\"roots\":[\".*\"]}}"),
            json("{\"ListFast\":{\"roots\":[\"rpool\"]}}"),
            json("{\"Details\":{\"names\":[]}}"),
            json("{\"Details\":{\"names\":[\"zpool1/a\",\"rpool/data@s\"]}}"),
            json("{\"Details\":{\"names\":[\"-o\"]}}"),
            json("{\"ListChanges\":{\"roots\":[\"rpool\"]}}"),
            json("{\"ListChanges\":{\"roots\":[]}}"),
            json("{\"ListSnapshotsOf\":{\"datasets\":[]}}"),
            json("{\"ListSnapshotsOf\":{\"datasets\":[\"zpool1/a\",\"rpool/data\"]}}"),
            json("{\"ListSnapshotsOf\":{\"datasets\":[\"zpool1/a@s1\"]}}"),
            json("{\"ListSnapshotsOf\":{\"datasets\":[\"-d\"]}}"),
        ];
        assert!(hostile.len() >= 40, "{}", hostile.len());
        let a = allowed();
        for h in &hostile {
            let got = parse_line(h).and_then(|op| check(&op, &a));
            let Err(Refused(why)) = got else {
                panic!("accepted: {h:?} as {got:?}");
            };
            assert!(!why.is_empty() && !why.contains('\n'), "{h:?}: {why:?}");
        }
    }

    /// The line a node sends survives a real shell (the full-shell mode)
    /// as the one argument `serve` then parses.
    #[test]
    fn the_line_is_one_word_for_a_shell() {
        let op = Op::Recv(RecvSpec {
            dataset: "zpool1/it's a $(name)".into(),
            force: false,
        });
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line(&op).replacen("zfs-nfs-replica serve", "printf %s", 1))
            .output()
            .unwrap();
        assert_eq!(parse_json(&String::from_utf8(out.stdout).unwrap()), Ok(op));
    }
}
