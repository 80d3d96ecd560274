//! Adopting a standby made by the old script (syncoid): its copies share
//! snapshot guids with the master, but they carry no holds, are writable,
//! and reading them updated atimes (`written` > 0), which the planner
//! rightly refuses as "receiver modified". Adoption proves there is nothing
//! to lose, then switches the copy to read-only standby mode. Pure: the
//! command reads both listings, the receiver's properties and, where
//! needed, `zfs diff`, and runs the steps planned here.

use std::collections::BTreeMap;

use crate::plan::standing;
use crate::step::Step;
use crate::units::human_bytes;
use crate::zfs::{Kind, Listing, Op, RoleProps};

/// Datasets whose unsnapshotted writes must be explained by `zfs diff`
/// (mounted filesystems with `written` > 0): `(snapshot, dataset)`.
pub fn diffs_needed(
    src: &Listing,
    src_root: &str,
    dst: &Listing,
    dst_root: &str,
    props: &BTreeMap<String, RoleProps>,
) -> Vec<(String, String)> {
    dst.datasets
        .values()
        .filter(|d| d.written > 0 && d.kind == Kind::Filesystem)
        .filter(|d| props.get(&d.name).and_then(|p| p.mounted) == Some(true))
        .filter(|d| {
            src.datasets
                .contains_key(&source_name(src_root, dst_root, &d.name))
        })
        .filter_map(|d| {
            d.newest()
                .map(|s| (format!("{}@{}", d.name, s.name), d.name.clone()))
        })
        .collect()
}

fn source_name(src_root: &str, dst_root: &str, target: &str) -> String {
    crate::zfs::names::rebase(target, dst_root, src_root)
}

/// `zfs diff` escapes spaces and unprintable bytes as `\NNNN` (octal).
fn unescape(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 < b.len()
            && b[i + 1..i + 5].iter().all(|c| (b'0'..=b'7').contains(c))
            && let Ok(v) = u8::from_str_radix(&path[i + 1..i + 5], 8)
        {
            out.push(v);
            i += 5;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The lines of `zfs diff` output that are real changes. Not real: the
/// directories child datasets are mounted on (mounting a received child
/// can recreate its mountpoint directory) and the dataset's own top
/// directory marked modified because of such an entry.
fn real_changes(diff: &str, dataset: &str, props: &BTreeMap<String, RoleProps>) -> Vec<String> {
    let own = props.get(dataset).and_then(|p| p.mountpoint.clone());
    let child_mounts: Vec<String> = props
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{dataset}/")))
        .filter_map(|(_, p)| p.mountpoint.clone())
        .collect();
    diff.lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let mut f = l.split('\t');
            let change = f.next().unwrap_or("");
            let paths: Vec<String> = f
                .map(|p| unescape(p).trim_end_matches('/').to_string())
                .collect();
            let benign_path = |p: &String| child_mounts.iter().any(|m| m == p);
            let own_top = change == "M"
                && paths.len() == 1
                && own.as_deref().map(|o| o.trim_end_matches('/')) == Some(paths[0].as_str());
            !(own_top || (!paths.is_empty() && paths.iter().all(benign_path)))
        })
        .map(String::from)
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct AdoptPlan {
    /// Reasons not to adopt: something only the standby has. Any one of
    /// them stops the adoption before anything runs.
    pub obstacles: Vec<String>,
    /// What was checked and found fine, one line per dataset.
    pub checked: Vec<String>,
    pub steps: Vec<Step>,
}

/// `diffs`: the output of `zfs diff` for each dataset [`diffs_needed`] named.
pub fn plan_adopt(
    src: &Listing,
    src_root: &str,
    dst: &Listing,
    dst_root: &str,
    props: &BTreeMap<String, RoleProps>,
    diffs: &BTreeMap<String, String>,
) -> AdoptPlan {
    let mut p = AdoptPlan::default();
    let mut make_readonly = Vec::new();
    let mut rollbacks = Vec::new();
    for d in dst.datasets.values() {
        let sname = source_name(src_root, dst_root, &d.name);
        let Some(s) = src.datasets.get(&sname) else {
            p.checked.push(format!(
                "{}: not on the master: kept as it is (never destroyed)",
                d.name
            ));
            continue;
        };
        let st = standing(s, d);
        let Some(common) = st.common else {
            if crate::plan::receiver_is_empty(
                d.snapshots.len(),
                d.referenced,
                crate::plan::DEFAULT_EMPTY_MAX_REFERENCED,
            ) {
                p.checked.push(format!(
                    "{}: empty, no snapshot: the first run replaces it (run --overwrite-empty-target)",
                    d.name
                ));
            } else {
                p.obstacles.push(format!(
                    "{}: no snapshot in common with {sname} ({} in {} snapshot(s)): not a copy of it",
                    d.name,
                    human_bytes(d.referenced),
                    d.snapshots.len()
                ));
            }
            continue;
        };
        if !st.receiver_newer.is_empty() {
            p.obstacles.push(format!(
                "{}: snapshot(s) only on the standby after @{}: {}",
                d.name,
                common.name,
                st.receiver_newer
                    .iter()
                    .map(|x| format!("@{} ({})", x.name, human_bytes(x.written)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        }
        let readonly = props.get(&d.name).is_some_and(|x| x.readonly);
        if !readonly {
            make_readonly.push(d.name.clone());
        }
        if d.written == 0 {
            p.checked.push(format!(
                "{}: in sync at @{} or behind it, nothing written since",
                d.name, common.name
            ));
            continue;
        }
        let newest = d.newest().map(|x| x.name.clone()).unwrap_or_default();
        let why_not = if d.kind == Kind::Volume {
            Some("a volume: its writes are data".to_string())
        } else if props.get(&d.name).and_then(|x| x.mounted) != Some(true) {
            Some("not mounted, so `zfs diff` cannot tell what changed (mount it and run adopt again)".to_string())
        } else {
            match diffs.get(&d.name) {
                None => Some("`zfs diff` was not run".to_string()),
                Some(out) if real_changes(out, &d.name, props).is_empty() => None,
                Some(out) => {
                    let lines = real_changes(out, &d.name, props);
                    let more = if lines.len() > 5 {
                        format!(" ... {} more", lines.len() - 5)
                    } else {
                        String::new()
                    };
                    Some(format!(
                        "files changed since @{newest}: {}{more}",
                        lines.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                    ))
                }
            }
        };
        match why_not {
            Some(w) => p.obstacles.push(format!(
                "{}: {} written since @{newest}: {w}",
                d.name,
                human_bytes(d.written)
            )),
            None => {
                p.checked.push(format!(
                    "{}: {} written since @{newest}, and `zfs diff` lists no changed file: access times only",
                    d.name,
                    human_bytes(d.written)
                ));
                rollbacks.push((d.name.clone(), newest, d.written));
            }
        }
    }
    if !make_readonly.is_empty() {
        p.steps.push(Step {
            op: Op::SetReadonly {
                datasets: make_readonly,
            },
            note: "read-only standby: nothing (not even atime) changes it any more".into(),
            destructive: false,
            best_effort: false,
        });
    }
    for (ds, snap, written) in rollbacks {
        p.steps.push(Step {
            op: Op::Rollback {
                snapshot: format!("{ds}@{snap}"),
                destroy_newer: false,
            },
            note: format!(
                "discards {} of access-time updates (no snapshot is destroyed)",
                human_bytes(written)
            ),
            destructive: true,
            best_effort: false,
        });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{ds, listing as l, vol};

    fn props(readonly: bool, mounted: bool) -> RoleProps {
        RoleProps {
            readonly,
            readonly_source: "default".into(),
            mounted: Some(mounted),
            canmount: Some("on".into()),
            mountpoint: Some("/x".into()),
            partial_receive: false,
            key_unavailable: false,
        }
    }

    #[test]
    fn an_atime_only_standby_is_adopted() {
        let src = l(vec![
            ds("zpool1", "s1:1:5 s2:2:6", 0),
            ds("zpool1/a", "s1:3:5 s2:4:6", 0),
        ]);
        let dst = l(vec![
            ds("zpool1", "s1:1:5", 0),
            ds("zpool1/a", "s1:3:5 s2:4:9", 65536),
        ]);
        let pr: BTreeMap<_, _> = [
            ("zpool1".to_string(), props(false, true)),
            ("zpool1/a".to_string(), props(false, true)),
        ]
        .into();
        assert_eq!(
            diffs_needed(&src, "zpool1", &dst, "zpool1", &pr),
            vec![("zpool1/a@s2".to_string(), "zpool1/a".to_string())]
        );
        let diffs: BTreeMap<_, _> = [("zpool1/a".to_string(), String::new())].into();
        let p = plan_adopt(&src, "zpool1", &dst, "zpool1", &pr, &diffs);
        assert!(p.obstacles.is_empty(), "{:?}", p.obstacles);
        let steps: Vec<String> = p.steps.iter().map(|s| s.op.to_string()).collect();
        assert_eq!(
            steps,
            [
                "zfs set readonly=on zpool1 zpool1/a",
                "zfs rollback zpool1/a@s2"
            ]
        );
        assert!(p.steps[1].destructive && p.steps[1].note.contains("64.0 KiB"));
    }

    #[test]
    fn mountpoint_directories_of_children_are_not_changes() {
        let mut pr: BTreeMap<String, RoleProps> = BTreeMap::new();
        let mp = |m: &str| RoleProps {
            mountpoint: Some(m.into()),
            ..props(false, true)
        };
        pr.insert("zpool1/a".into(), mp("/zpool1/a"));
        pr.insert("zpool1/a/b c".into(), mp("/zpool1/a/b c"));
        // Captured from a syncoid-made standby in the lab (zfs diff of the
        // parent after its child was received and mounted).
        let diff = "-\t/zpool1/a/b\\0040c\n+\t/zpool1/a/b\\0040c\nM\t/zpool1/a/\n";
        assert!(real_changes(diff, "zpool1/a", &pr).is_empty());
        let real = format!("{diff}+\t/zpool1/a/new file\n");
        assert_eq!(
            real_changes(&real, "zpool1/a", &pr),
            ["+\t/zpool1/a/new file"]
        );
        assert_eq!(unescape("/a/b\\0040c\\0134"), "/a/b c\\");
    }

    #[test]
    fn anything_only_on_the_standby_stops_the_adoption() {
        let src = l(vec![
            ds("zpool1", "s1:1:5", 0),
            ds("zpool1/a", "s1:3:5", 0),
            ds("zpool1/b", "s1:5:5", 0),
            ds("zpool1/c", "s1:7:5", 0),
            vol("zpool1/v", "s1:9:5", 0),
            ds("zpool1/u", "s1:11:5", 0),
        ]);
        let dst = l(vec![
            ds("zpool1", "s1:1:5", 0),
            ds("zpool1/a", "s1:3:5 mine:30:8", 0),
            ds("zpool1/b", "s1:5:5", 4096),
            ds("zpool1/c", "other:70:5", 0),
            vol("zpool1/v", "s1:9:5", 4096),
            ds("zpool1/u", "s1:11:5", 4096),
        ]);
        let mut pr: BTreeMap<String, RoleProps> = dst
            .datasets
            .keys()
            .map(|k| (k.clone(), props(true, true)))
            .collect();
        pr.insert("zpool1/u".into(), props(true, false));
        let diffs: BTreeMap<_, _> =
            [("zpool1/b".to_string(), "M\t/zpool1/b/f\n".to_string())].into();
        let p = plan_adopt(&src, "zpool1", &dst, "zpool1", &pr, &diffs);
        let o = p.obstacles.join("\n");
        assert!(
            o.contains("zpool1/a: snapshot(s) only on the standby after @s1: @mine"),
            "{o}"
        );
        assert!(
            o.contains(
                "zpool1/b: 4.0 KiB written since @s1: files changed since @s1: M\t/zpool1/b/f"
            ),
            "{o}"
        );
        assert!(o.contains("zpool1/c: no snapshot in common"), "{o}");
        assert!(
            o.contains("zpool1/v: 4.0 KiB written since @s1: a volume"),
            "{o}"
        );
        assert!(
            o.contains("zpool1/u: 4.0 KiB written since @s1: not mounted"),
            "{o}"
        );
        assert_eq!(p.obstacles.len(), 5);
    }
}
