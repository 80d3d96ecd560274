//! Whether a dataset's snapshots changed, without listing them: OpenZFS
//! 2.2+'s `snapshots_changed`, read for the datasets alone
//! ([`super::Op::ListChanges`]). What the value does and does not tell is in
//! docs/facts.md; how a run relies on it, in `src/engine/kept.rs`.

use super::list::num;
use super::names::valid_dataset_name;

/// The columns, in order. `guid` and `createtxg` tell a dataset from another
/// of the same name; `origin` changes when a clone is promoted, which moves
/// snapshots to it without changing its `snapshots_changed`.
pub const CHANGE_PROPS: &[&str] = &["name", "guid", "createtxg", "origin", "snapshots_changed"];

/// One dataset's row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamp {
    pub guid: u64,
    pub createtxg: u64,
    /// `origin`, for a clone.
    pub origin: Option<String>,
    /// `snapshots_changed` in seconds since the epoch; None (`-`): never
    /// set (no snapshot was ever made or destroyed, or the pool lacks the
    /// `extensible_dataset` feature and the value was not kept).
    pub changed: Option<u64>,
}

/// Parse `zfs list -H -p -o <CHANGE_PROPS>`, in its order (parents first).
/// Strict: a wrong field count, a bad name or number, a name twice.
pub fn parse_changes(text: &str) -> Result<Vec<(String, Stamp)>, String> {
    let mut out: Vec<(String, Stamp)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = |why: String| format!("`zfs list` line {}: {why}: {line:?}", i + 1);
        let f: Vec<&str> = line.split('\t').collect();
        let [name, guid, createtxg, origin, changed] = f[..] else {
            return Err(at(format!(
                "expected {} tab-separated fields, found {}",
                CHANGE_PROPS.len(),
                f.len()
            )));
        };
        valid_dataset_name(name).map_err(|e| at(e.to_string()))?;
        if !seen.insert(name) {
            return Err(at("dataset listed twice".into()));
        }
        let origin = match origin {
            "-" => None,
            o if o.contains('@') => Some(o.to_string()),
            o => return Err(at(format!("origin `{o}` is not a snapshot"))),
        };
        let changed = match changed {
            "-" => None,
            c => Some(num(c, "snapshots_changed").map_err(at)?),
        };
        out.push((
            name.to_string(),
            Stamp {
                guid: num(guid, "guid").map_err(at)?,
                createtxg: num(createtxg, "createtxg").map_err(at)?,
                origin,
                changed,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_strictly() {
        let text = "zpool1\t11\t1\t-\t1764600000\nzpool1/a b\t12\t40\tzpool1/x@s1\t-\n";
        let got = parse_changes(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            (
                "zpool1/a b".to_string(),
                Stamp {
                    guid: 12,
                    createtxg: 40,
                    origin: Some("zpool1/x@s1".into()),
                    changed: None
                }
            )
        );
        assert_eq!(got[0].1.changed, Some(1764600000));
        for bad in [
            "zpool1\t11\t1\t-\n",
            "zpool1\t11\t1\t-\t1\textra\n",
            "zpool1\tx\t1\t-\t1\n",
            "zpool1\t11\t1\t-\tyesterday\n",
            "zpool1\t11\t1\tzpool1/x\t1\n",
            "zpool1@s\t11\t1\t-\t1\n",
            "zpool1\t11\t1\t-\t1\nzpool1\t11\t1\t-\t1\n",
            "\n",
        ] {
            let e = parse_changes(bad).unwrap_err();
            assert!(e.starts_with("`zfs list` line "), "{bad:?}: {e}");
        }
        assert_eq!(parse_changes(""), Ok(vec![]));
    }
}
