//! Completing a fast listing ([`super::list::FAST_PROPS`]): one `zfs get` of
//! every dataset and of the few snapshots whose other fields a run reads
//! (each dataset's newest, the newest common one, the last run's holds).
//! Strict like the listing: a row for a name not asked, a missing or
//! repeated property, a guid or createtxg that differs from the listing's
//! (the name now belongs to another snapshot) are errors, and the caller
//! lists in full instead.

use std::collections::{BTreeMap, BTreeSet};

use super::list::{Kind, LIST_PROPS, Listing, num, num_or_zero};
use super::names::{valid_dataset_name, valid_resume_token};

/// What `zfs get -H -p -o name,property,value` is asked: every column of
/// the full listing but the name (the get's own first field).
pub const DETAIL_PROPS: &[&str] = LIST_PROPS.split_at(1).1;

/// One name's properties, as `zfs get` printed them.
type Row<'t> = BTreeMap<&'t str, &'t str>;

fn parse(text: &str) -> Result<BTreeMap<&str, Row<'_>>, String> {
    let mut rows: BTreeMap<&str, Row<'_>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let at = |why: String| format!("`zfs get` line {}: {why}: {:?}", i + 1, line);
        let f: Vec<&str> = line.split('\t').collect();
        let [name, prop, value] = f[..] else {
            return Err(at(format!(
                "expected 3 tab-separated fields, found {}",
                f.len()
            )));
        };
        if !DETAIL_PROPS.contains(&prop) {
            return Err(at(format!("unexpected property `{prop}`")));
        }
        if rows.entry(name).or_default().insert(prop, value).is_some() {
            return Err(at(format!("`{prop}` printed twice")));
        }
    }
    Ok(rows)
}

/// Fill in `listing` (a fast one) from the `zfs get` of `asked`: every
/// dataset of the listing must be among them; the snapshots asked become
/// exact. On error the listing is half-completed and must be dropped.
pub fn complete(listing: &mut Listing, asked: &[String], text: &str) -> Result<(), String> {
    let rows = parse(text)?;
    let asked: BTreeSet<&str> = asked.iter().map(String::as_str).collect();
    if let Some(extra) = rows.keys().find(|n| !asked.contains(*n)) {
        return Err(format!("`zfs get` printed {extra:?}, which was not asked"));
    }
    if let Some(missing) = asked.iter().find(|n| !rows.contains_key(*n)) {
        return Err(format!("`zfs get` printed nothing for {missing:?}"));
    }
    if let Some(d) = listing
        .datasets
        .keys()
        .find(|d| !asked.contains(d.as_str()))
    {
        return Err(format!("{d:?} was listed but not asked about"));
    }
    for (name, row) in &rows {
        let get = |p: &str| {
            row.get(p)
                .copied()
                .ok_or_else(|| format!("{name:?}: `zfs get` printed no `{p}`"))
        };
        let err = |e: String| format!("{name:?}: {e}");
        let (guid, createtxg) = (
            num(get("guid")?, "guid").map_err(err)?,
            num(get("createtxg")?, "createtxg").map_err(err)?,
        );
        match name.split_once('@') {
            Some((ds, short)) => {
                let s = listing
                    .datasets
                    .get_mut(ds)
                    .and_then(|d| d.snapshots.iter_mut().find(|s| &*s.name == short))
                    .ok_or_else(|| format!("{name:?} is not in the listing"))?;
                if (s.guid, s.createtxg) != (guid, createtxg) || get("type")? != "snapshot" {
                    return Err(format!(
                        "{name:?} is another snapshot than the one listed (destroyed and made again?)"
                    ));
                }
                let creation = get("creation")?;
                s.creation = creation
                    .parse::<i64>()
                    .map_err(|_| err(format!("creation `{creation}` is not a number")))?;
                s.used = num(get("used")?, "used").map_err(err)?;
                s.referenced = num(get("referenced")?, "referenced").map_err(err)?;
                s.written = num_or_zero(get("written")?, "written").map_err(err)?;
                s.userrefs = num_or_zero(get("userrefs")?, "userrefs").map_err(err)?;
            }
            None => {
                valid_dataset_name(name).map_err(|e| err(e.to_string()))?;
                let d = listing
                    .datasets
                    .get_mut(*name)
                    .ok_or_else(|| format!("{name:?} is not in the listing"))?;
                if d.guid != guid {
                    return Err(format!(
                        "{name:?} is another dataset than the one listed (replaced?)"
                    ));
                }
                d.kind = match get("type")? {
                    "filesystem" => Kind::Filesystem,
                    "volume" => Kind::Volume,
                    t => return Err(err(format!("type `{t}` where a dataset was listed"))),
                };
                d.used = num(get("used")?, "used").map_err(err)?;
                d.referenced = num(get("referenced")?, "referenced").map_err(err)?;
                d.written = num_or_zero(get("written")?, "written").map_err(err)?;
                d.resume_token = match get("receive_resume_token")? {
                    "-" | "" => None,
                    t => {
                        valid_resume_token(t).map_err(|e| err(e.to_string()))?;
                        Some(t.to_string())
                    }
                };
                d.encrypted = !matches!(get("encryption")?, "off" | "-");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::ListParser;

    fn fast(text: &str) -> Listing {
        let mut p = ListParser::fast();
        text.lines().for_each(|l| p.line(l));
        p.finish().unwrap()
    }

    const FAST: &str =
        "zpool1\t10\t1\nzpool1@a\t11\t5\nzpool1@b\t12\t6\nzpool1/v\t20\t3\nzpool1/v@b\t21\t6\n";

    fn get(rows: &[(&str, &[(&str, &str)])]) -> String {
        let mut out = String::new();
        for (name, props) in rows {
            for (p, v) in *props {
                out.push_str(&format!("{name}\t{p}\t{v}\n"));
            }
        }
        out
    }

    fn ds(
        guid: &'static str,
        txg: &'static str,
        typ: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        vec![
            ("guid", guid),
            ("createtxg", txg),
            ("type", typ),
            ("creation", "1700000000"),
            ("used", "4096"),
            ("referenced", "2048"),
            ("written", "512"),
            ("userrefs", "-"),
            ("receive_resume_token", "-"),
            ("encryption", "off"),
        ]
    }

    fn snap(
        guid: &'static str,
        txg: &'static str,
        refs: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        vec![
            ("guid", guid),
            ("createtxg", txg),
            ("type", "snapshot"),
            ("creation", "1700000100"),
            ("used", "0"),
            ("referenced", "2048"),
            ("written", "1024"),
            ("userrefs", refs),
            ("receive_resume_token", "-"),
            ("encryption", "off"),
        ]
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_fast_listing_is_partial_until_completed() {
        let mut l = fast(FAST);
        assert!(l.partial);
        assert_eq!(l.datasets["zpool1"].snapshots[1].guid, 12);
        assert_eq!(l.datasets["zpool1"].snapshots[1].creation, 0);
        let text = get(&[
            ("zpool1", &ds("10", "1", "filesystem")),
            ("zpool1@b", &snap("12", "6", "1")),
            ("zpool1/v", &ds("20", "3", "volume")),
        ]);
        complete(&mut l, &names(&["zpool1", "zpool1@b", "zpool1/v"]), &text).unwrap();
        let (root, v) = (&l.datasets["zpool1"], &l.datasets["zpool1/v"]);
        assert_eq!(
            (root.used, root.referenced, root.written),
            (4096, 2048, 512)
        );
        assert_eq!(v.kind, Kind::Volume);
        let b = &root.snapshots[1];
        assert_eq!((b.creation, b.written, b.userrefs), (1700000100, 1024, 1));
        // Not asked: name, guid and createtxg only.
        assert_eq!(root.snapshots[0].userrefs, 0);
        assert_eq!(v.snapshots[0].creation, 0);
    }

    #[test]
    fn anything_but_the_asked_rows_is_refused() {
        let all = names(&["zpool1", "zpool1@b", "zpool1/v"]);
        let good = [
            ("zpool1", ds("10", "1", "filesystem")),
            ("zpool1@b", snap("12", "6", "0")),
            ("zpool1/v", ds("20", "3", "volume")),
        ];
        let text = |rows: &[(&str, Vec<(&str, &str)>)]| {
            get(&rows
                .iter()
                .map(|(n, p)| (*n, p.as_slice()))
                .collect::<Vec<_>>())
        };
        let try_with = |rows: &[(&str, Vec<(&str, &str)>)], asked: &[String]| {
            complete(&mut fast(FAST), asked, &text(rows)).unwrap_err()
        };
        // A name reused by another snapshot since the listing.
        let mut reused = good.to_vec();
        reused[1].1 = snap("99", "8", "0");
        assert!(try_with(&reused, &all).contains("another snapshot"));
        // A dataset replaced.
        let mut replaced = good.to_vec();
        replaced[2].1 = ds("21", "3", "volume");
        assert!(try_with(&replaced, &all).contains("another dataset"));
        // A row missing, a property missing, a name not asked.
        assert!(try_with(&good[..2], &all).contains("nothing for"));
        let mut short = good.to_vec();
        short[0].1.retain(|(p, _)| *p != "used");
        assert!(try_with(&short, &all).contains("no `used`"));
        assert!(try_with(&good, &all[..2]).contains("not asked"));
        // A dataset of the listing left out of the question.
        assert!(try_with(&good[..2], &all[..2]).contains("not asked about"));
        // Garbage.
        let e = complete(&mut fast(FAST), &all, "zpool1\tguid\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
