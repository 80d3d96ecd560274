//! The rule: every section of sanoid.conf at or below a managed dataset
//! carries the role's `autosnap` itself, once, spelled so that sanoid reads
//! it as the role means (`yes` on the master, `no` elsewhere). Nothing else
//! changes: no section is added, no other key, comment, blank, line ending
//! or byte.
//!
//! Why every such section (docs/sanoid.md): sanoid resolves its sections in
//! Perl hash order, a different order each run. A section with
//! `recursive = yes` copies all its settings, `autosnap` included, onto
//! every dataset below it; a section processed after that starts from the
//! copied settings and applies its templates and its own keys on top; one
//! processed before is overwritten. So a dataset's `autosnap` is certain
//! only when its own section and every recursive section above it say the
//! same: each must carry the key itself (its own keys win over its
//! templates and over `template_default`).
//!
//! Two layouts cannot be made certain without changing what sanoid does
//! elsewhere, and are refused with the reason:
//! - a section *above* a managed dataset with `recursive` (yes or zfs) or
//!   `skip_children`: it reaches into the managed subtree from outside it;
//! - a `path` given twice in one section.
//!
//! Below a section with `recursive = zfs` sanoid forces every dataset's own
//! `autosnap` to 0 (that section's `zfs snapshot -r` covers them), so only
//! that section's `autosnap` decides: sections below it are left alone.

use super::ini::{self, Ini, Kind};
use crate::zfs::names::is_at_or_below;

/// What sanoid reads as true and false for a toggle (sanoid's `@istrue`,
/// `@isfalse`): anything else is a string, true unless empty or "0".
const TRUE: [&str; 10] = [
    "1", "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON",
];
const FALSE: [&str; 10] = [
    "0", "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF",
];

/// A toggle's value as sanoid's Perl sees it: true, false, or a string
/// that is true because it is not empty and not "0".
pub fn sanoid_true(raw: &str) -> bool {
    if TRUE.contains(&raw) {
        return true;
    }
    if FALSE.contains(&raw) {
        return false;
    }
    !raw.is_empty() && raw != "0"
}

/// The role's value, in the spelling the user chose for the other one
/// (`off` for `on`, `False` for `True`, ...), so that a flip and a flip back
/// give the file back byte for byte; `yes`/`no` for anything else.
fn spelled(current: Option<&str>, on: bool) -> &'static str {
    let (from, to) = if on { (&FALSE, &TRUE) } else { (&TRUE, &FALSE) };
    current
        .and_then(|c| from.iter().position(|f| *f == c))
        .map_or(if on { "yes" } else { "no" }, |i| to[i])
}

/// `recursive` as sanoid's `init` reads it: (recursive, zfs recursion).
fn recursion(s: &ini::Section) -> (bool, bool) {
    match s.single("recursive") {
        Some(v) => (TRUE.contains(&v), v.to_ascii_lowercase().contains("zfs")),
        None => (false, false),
    }
}

fn skips_children(s: &ini::Section) -> bool {
    s.single("skip_children").is_some_and(|v| TRUE.contains(&v))
}

/// The outcome of a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new file (equal to the input when nothing needed a change).
    pub text: Vec<u8>,
    /// The sections whose `autosnap` changed, in file order.
    pub changed: Vec<String>,
    /// Things the operator should know, one line each (a trailing comment
    /// moved to its own line, a managed dataset that no section covers).
    pub notes: Vec<String>,
}

/// A line edit.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the line's content (its ending stays).
    Replace(Vec<u8>),
    Delete,
}

/// The file with every section at or below `managed` saying
/// `autosnap = yes` (`on`) or `no`, or why that cannot be done with
/// certainty (the file is then to be left as it is).
pub fn rewrite(text: &[u8], managed: &[String], on: bool) -> Result<Rewrite, ini::IniError> {
    let conf = ini::parse(text)?;
    let refuse = |line: usize, reason: String| ini::IniError {
        line: line + 1,
        reason,
    };
    // Each dataset section's path: its `path` key, else its name.
    let mut paths: Vec<Option<String>> = Vec::with_capacity(conf.sections.len());
    for s in &conf.sections {
        if s.is_template() {
            paths.push(None);
            continue;
        }
        let p = match s.values("path").as_slice() {
            [] => s.name.clone(),
            [one] => one.to_string(),
            _ => {
                let line = s
                    .params
                    .iter()
                    .filter(|p| p.key == "path")
                    .nth(1)
                    .map_or(s.headers[0], |p| p.first_line);
                return Err(refuse(
                    line,
                    format!(
                        "[{}] sets `path` twice: which dataset it means is not certain",
                        s.name
                    ),
                ));
            }
        };
        paths.push(Some(p));
    }
    // A recursive section above a managed dataset reaches into it.
    for m in managed {
        for (s, p) in conf.sections.iter().zip(&paths) {
            let Some(p) = p else { continue };
            if is_at_or_below(m, p) && m != p {
                let (rec, zfs) = recursion(s);
                if rec || zfs || skips_children(s) {
                    let how = if zfs {
                        "recursive = zfs"
                    } else if rec {
                        "recursive = yes"
                    } else {
                        "skip_children = yes"
                    };
                    return Err(refuse(
                        s.headers[0],
                        format!(
                            "[{}] ({how}) reaches the managed dataset {m} from above: sanoid resolves its sections in a different order each run, so whether {m} is snapshotted would depend on chance. Make [{}] not recursive, or manage {p} itself ([sanoid] datasets in the config)",
                            s.name, s.name
                        ),
                    ));
                }
            }
        }
    }
    // The sections that must carry the role's autosnap.
    let zfs_roots: Vec<&str> = conf
        .sections
        .iter()
        .zip(&paths)
        .filter_map(|(s, p)| {
            let p = p.as_deref()?;
            (managed.iter().any(|m| is_at_or_below(p, m)) && recursion(s).1).then_some(p)
        })
        .collect();
    let relevant: Vec<usize> = (0..conf.sections.len())
        .filter(|i| {
            let Some(p) = paths[*i].as_deref() else {
                return false;
            };
            managed.iter().any(|m| is_at_or_below(p, m))
                && !zfs_roots.iter().any(|z| p != *z && is_at_or_below(p, z))
        })
        .collect();
    let want = if on { "yes" } else { "no" };
    let good = |v: &str| {
        if on {
            TRUE.contains(&v)
        } else {
            FALSE.contains(&v)
        }
    };
    let mut edits: Vec<Option<Edit>> = vec![None; conf.lines.len()];
    let mut inserts: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut changed = Vec::new();
    let mut notes = Vec::new();
    for &si in &relevant {
        let s = &conf.sections[si];
        let own: Vec<&ini::Param> = s.params.iter().filter(|p| p.key == "autosnap").collect();
        if let [p] = own.as_slice()
            && !p.heredoc
            && good(&p.values[0])
        {
            continue;
        }
        changed.push(s.name.clone());
        match own.split_first() {
            Some((first, rest)) => {
                // The first one keeps its place, key and spacing; the others go.
                let line = conf.content(first.first_line);
                let eq = line
                    .iter()
                    .position(|b| *b == b'=')
                    .expect("a key line has `=`");
                // Every blank Config::IniFiles skips after `=` (Perl's \s,
                // form feeds included) stays, so a flip back is exact.
                let spaces = line[eq + 1..]
                    .iter()
                    .take_while(|b| ini::is_space(**b))
                    .count();
                let mut new = line[..eq + 1 + spaces].to_vec();
                let raw = if first.heredoc {
                    None
                } else {
                    Some(first.values[0].as_str())
                };
                new.extend_from_slice(spelled(raw, on).as_bytes());
                // `autosnap = yes # master only`: sanoid reads the comment as
                // part of the value; it is kept as a comment line above.
                if let Some(c) = raw.and_then(|v| v.find(['#', ';']).map(|i| v[i..].trim_end())) {
                    let mut comment = conf.indent(first.first_line).to_vec();
                    comment.extend_from_slice(c.as_bytes());
                    inserts.push((first.first_line.wrapping_sub(1), comment));
                    notes.push(format!(
                        "[{}]: the text `{c}` after the autosnap value was part of the value for sanoid (it does not strip trailing comments); it is now a comment line of its own",
                        s.name
                    ));
                }
                edits[first.first_line] = Some(Edit::Replace(new));
                edits[first.first_line + 1..=first.last_line].fill(Some(Edit::Delete));
                for p in rest {
                    edits[p.first_line..=p.last_line].fill(Some(Edit::Delete));
                }
            }
            None => {
                // After the last key of the section's first block, indented
                // like it (a tab when the block has none).
                let header = s.headers[0];
                let next_header = s.headers.get(1).copied().unwrap_or(usize::MAX).min(
                    conf.lines
                        .iter()
                        .enumerate()
                        .skip(header + 1)
                        .find(|(_, l)| matches!(l.kind, Kind::Header(_)))
                        .map_or(usize::MAX, |(i, _)| i),
                );
                let last = s
                    .params
                    .iter()
                    .filter(|p| p.first_line > header && p.first_line < next_header)
                    .map(|p| p.last_line)
                    .max();
                let (after, indent) = match last {
                    Some(l) => {
                        let first = s
                            .params
                            .iter()
                            .find(|p| p.last_line == l)
                            .map_or(l, |p| p.first_line);
                        (l, conf.indent(first).to_vec())
                    }
                    None => (header, b"\t".to_vec()),
                };
                let mut line = indent;
                line.extend_from_slice(b"autosnap = ");
                line.extend_from_slice(want.as_bytes());
                inserts.push((after, line));
            }
        }
    }
    for m in managed {
        let covered = conf
            .sections
            .iter()
            .zip(&paths)
            .any(|(_, p)| p.as_deref().is_some_and(|p| is_at_or_below(p, m)));
        if !covered {
            notes.push(format!(
                "no section of sanoid.conf is at or below {m}: sanoid takes no snapshots there, so this node has none of its own to send"
            ));
        }
    }
    let out = assemble(&conf, &edits, &inserts);
    verify(&conf, &out, &relevant, on).map_err(|reason| refuse(0, reason))?;
    Ok(Rewrite {
        text: out,
        changed,
        notes,
    })
}

/// The file with the edits applied. `inserts` are lines to add after a
/// line (`usize::MAX`, from `0.wrapping_sub(1)`: before the first line),
/// each with the file's own line ending.
fn assemble(conf: &Ini<'_>, edits: &[Option<Edit>], inserts: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let t = conf.text;
    let mut out = Vec::with_capacity(t.len() + 64);
    let put_inserts = |out: &mut Vec<u8>, after: usize| {
        for (_, line) in inserts.iter().filter(|(a, _)| *a == after) {
            // The line before may be a last line without an ending.
            if !out.is_empty()
                && !out.ends_with(b"\n")
                && !out.ends_with(b"\r")
                && !out.ends_with(b"\x15")
            {
                out.extend_from_slice(conf.eol);
            }
            out.extend_from_slice(line);
            out.extend_from_slice(conf.eol);
        }
    };
    put_inserts(&mut out, usize::MAX);
    for (i, l) in conf.lines.iter().enumerate() {
        match &edits[i] {
            Some(Edit::Delete) => {}
            Some(Edit::Replace(new)) => {
                out.extend_from_slice(new);
                out.extend_from_slice(&t[l.content_end..l.end]);
            }
            None => out.extend_from_slice(&t[l.start..l.end]),
        }
        put_inserts(&mut out, i);
    }
    out
}

/// The rewrite did what it promises: read again, every relevant section
/// says the role once and cleanly, and every other key of every section is
/// as it was.
fn verify(before: &Ini<'_>, out: &[u8], relevant: &[usize], on: bool) -> Result<(), String> {
    let after =
        ini::parse(out).map_err(|e| format!("the rewritten file would not read back ({e})"))?;
    let rest = |c: &Ini<'_>| -> Vec<(String, String, Vec<String>)> {
        c.sections
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.params
                    .iter()
                    .filter(move |p| !(p.key == "autosnap" && relevant.contains(&i)))
                    .map(move |p| (s.name.clone(), p.key.clone(), p.values.clone()))
            })
            .collect()
    };
    if rest(before) != rest(&after) || before.sections.len() != after.sections.len() {
        return Err("the rewrite would change more than autosnap".into());
    }
    for &i in relevant {
        let s = &after.sections[i];
        let own: Vec<&ini::Param> = s.params.iter().filter(|p| p.key == "autosnap").collect();
        let ok = matches!(own.as_slice(), [p] if !p.heredoc && sanoid_true(&p.values[0]) == on && (TRUE.contains(&p.values[0].as_str()) || FALSE.contains(&p.values[0].as_str())));
        if !ok {
            return Err(format!(
                "[{}] would not say autosnap once and cleanly",
                s.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn rw(text: &str, managed: &[&str], on: bool) -> Rewrite {
        rewrite(text.as_bytes(), &m(managed), on).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn out(text: &str, managed: &[&str], on: bool) -> String {
        String::from_utf8(rw(text, managed, on).text).unwrap()
    }

    const POOLS: &[&str] = &["zpool1", "zpool2"];

    #[test]
    fn child_sections_as_the_script_documented_them() {
        // No section for the pools themselves: nothing is added (that would
        // make sanoid snapshot the pool roots with its defaults); the child
        // sections carry the role.
        let t = "[zpool1/data-nfs-share]\n\tuse_template = production\n\trecursive = yes\n\n[zpool2/photos]\n\tuse_template = production\n\trecursive = yes\n\n[template_production]\n\thourly = 36\n\tautosnap = yes\n";
        let r = rw(t, POOLS, false);
        assert_eq!(
            String::from_utf8(r.text).unwrap(),
            t.replace(
                "\trecursive = yes\n",
                "\trecursive = yes\n\tautosnap = no\n"
            )
        );
        assert_eq!(r.changed, m(&["zpool1/data-nfs-share", "zpool2/photos"]));
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn every_section_below_a_managed_one_carries_the_role() {
        let t = "[zpool1]\n\trecursive = yes\n\tautosnap = yes\n[zpool1/vm-disks]\n\tautosnap = yes\n[zpool1/vm-disks/a]\n\tuse_template = fast\n[template_fast]\n\tautosnap = yes\n\tfrequently = 4\n[rpool/data]\n\tautosnap = yes\n";
        let standby = out(t, POOLS, false);
        assert_eq!(
            standby,
            "[zpool1]\n\trecursive = yes\n\tautosnap = no\n[zpool1/vm-disks]\n\tautosnap = no\n[zpool1/vm-disks/a]\n\tuse_template = fast\n\tautosnap = no\n[template_fast]\n\tautosnap = yes\n\tfrequently = 4\n[rpool/data]\n\tautosnap = yes\n"
        );
        let master = out(&standby, POOLS, true);
        assert_eq!(master, standby.replace("autosnap = no", "autosnap = yes"));
    }

    #[test]
    fn values_are_judged_as_sanoid_reads_them() {
        // `no ` (a trailing blank) and `no # x` are strings for sanoid: true.
        for v in ["no ", "no # standby", "maybe", "<<EOT\nno\nEOT"] {
            let t = format!("[zpool1]\n\tautosnap = {v}\n");
            let o = out(&t, &["zpool1"], false);
            assert!(o.contains("\tautosnap = no\n"), "{v:?} -> {o:?}");
            assert_eq!(o.matches("autosnap").count(), 1, "{v:?} -> {o:?}");
        }
        // Spellings sanoid reads as the role stay as they are.
        for v in ["0", "off", "NO", "False"] {
            let t = format!("[zpool1]\n\tautosnap = {v}\n");
            assert_eq!(out(&t, &["zpool1"], false), t);
        }
        assert!(
            sanoid_true("no ") && sanoid_true("0.0") && !sanoid_true("") && !sanoid_true("OFF")
        );
    }

    #[test]
    fn a_trailing_comment_becomes_a_comment_line() {
        let t = "[zpool1]\n    autosnap = yes # master only\n    hourly = 24\n";
        let r = rw(t, &["zpool1"], false);
        assert_eq!(
            String::from_utf8(r.text.clone()).unwrap(),
            "[zpool1]\n    # master only\n    autosnap = no\n    hourly = 24\n"
        );
        assert!(r.notes[0].contains("`# master only`"), "{:?}", r.notes);
        // From then on only the value flips.
        let back = out(std::str::from_utf8(&r.text).unwrap(), &["zpool1"], true);
        assert_eq!(
            back,
            "[zpool1]\n    # master only\n    autosnap = yes\n    hourly = 24\n"
        );
    }

    #[test]
    fn line_endings_and_a_missing_final_newline_are_kept() {
        let t = "[zpool1]\r\n\tuse_template = p\r\n[template_p]\r\n\tautosnap = yes\r\n";
        assert_eq!(
            out(t, &["zpool1"], false),
            "[zpool1]\r\n\tuse_template = p\r\n\tautosnap = no\r\n[template_p]\r\n\tautosnap = yes\r\n"
        );
        let t = "[zpool1]\n\thourly = 1";
        assert_eq!(
            out(t, &["zpool1"], true),
            "[zpool1]\n\thourly = 1\n\tautosnap = yes\n"
        );
        let t = "[zpool1]\n\tautosnap = yes";
        assert_eq!(out(t, &["zpool1"], false), "[zpool1]\n\tautosnap = no");
    }

    #[test]
    fn duplicates_leave_exactly_one_autosnap() {
        // A key given twice is "true" to sanoid 2.1; a section written twice
        // is one section.
        let t = "[zpool1]\n\tautosnap = no\n\thourly = 1\n[rpool]\n\tautosnap = no\n[zpool1]\n\tautosnap = no\n\tdaily = 1\n";
        assert_eq!(
            out(t, &["zpool1"], false),
            "[zpool1]\n\tautosnap = no\n\thourly = 1\n[rpool]\n\tautosnap = no\n[zpool1]\n\tdaily = 1\n"
        );
        let t = "[zpool1]\n\thourly = 1\n[zpool1]\n\tdaily = 1\n";
        assert_eq!(
            out(t, &["zpool1"], true),
            "[zpool1]\n\thourly = 1\n\tautosnap = yes\n[zpool1]\n\tdaily = 1\n"
        );
    }

    #[test]
    fn here_documents_are_read_through() {
        let t = "[zpool1]\n\tpre_snapshot_script = <<EOT\n[not a section]\nautosnap = yes\nEOT\n\thourly = 1\n";
        assert_eq!(
            out(t, &["zpool1"], false),
            "[zpool1]\n\tpre_snapshot_script = <<EOT\n[not a section]\nautosnap = yes\nEOT\n\thourly = 1\n\tautosnap = no\n"
        );
    }

    #[test]
    fn zfs_recursion_decides_for_the_sections_below_it() {
        // Below `recursive = zfs` sanoid forces each dataset's own autosnap
        // to 0: only the top section's decides, the others are left alone.
        let t = "[zpool1]\n\trecursive = zfs\n\tautosnap = yes\n[zpool1/a]\n\thourly = 4\n";
        assert_eq!(
            out(t, &["zpool1"], false),
            "[zpool1]\n\trecursive = zfs\n\tautosnap = no\n[zpool1/a]\n\thourly = 4\n"
        );
    }

    #[test]
    fn path_keys_templates_and_other_datasets() {
        let t = "[nfs share]\n\tpath = zpool1/share\n\thourly = 1\n[zpool10]\n\tautosnap = yes\n[template_default]\n\tautosnap = yes\n";
        assert_eq!(
            out(t, &["zpool1"], false),
            "[nfs share]\n\tpath = zpool1/share\n\thourly = 1\n\tautosnap = no\n[zpool10]\n\tautosnap = yes\n[template_default]\n\tautosnap = yes\n"
        );
    }

    #[test]
    fn a_managed_dataset_without_any_section_is_noted_never_added() {
        let t = "[zpool1]\n\tautosnap = yes\n";
        let r = rw(t, POOLS, true);
        assert_eq!(String::from_utf8(r.text).unwrap(), t);
        assert_eq!(r.notes.len(), 1);
        assert!(r.notes[0].contains("at or below zpool2"), "{:?}", r.notes);
    }

    #[test]
    fn what_cannot_be_made_certain_is_refused() {
        for (t, managed, line, want) in [
            (
                "[tank]\n\trecursive = yes\n\tautosnap = yes\n[tank/nfs]\n\tautosnap = yes\n",
                "tank/nfs",
                1,
                "[tank] (recursive = yes) reaches the managed dataset tank/nfs",
            ),
            (
                "[tank]\n\trecursive = zfs\n",
                "tank/nfs",
                1,
                "recursive = zfs",
            ),
            (
                "[tank]\n\tskip_children = yes\n",
                "tank/nfs/x",
                1,
                "skip_children",
            ),
            (
                "[a]\n\tpath = tank\n\tpath = tank/nfs\n",
                "tank",
                3,
                "sets `path` twice",
            ),
        ] {
            let e = rewrite(t.as_bytes(), &m(&[managed]), false).unwrap_err();
            assert_eq!(e.line, line, "{t:?}: {e}");
            assert!(e.reason.contains(want), "{t:?}: {e}");
        }
        // Not recursive above it: fine, that section is its own dataset only.
        let t = "[tank]\n\tautosnap = yes\n[tank/nfs]\n\thourly = 1\n";
        assert_eq!(
            out(t, &["tank/nfs"], false),
            "[tank]\n\tautosnap = yes\n[tank/nfs]\n\thourly = 1\n\tautosnap = no\n"
        );
    }

    /// A small deterministic generator (xorshift): reproducible cases, no
    /// extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
            v[(self.next() % v.len() as u64) as usize]
        }
    }

    fn random_conf(r: &mut Rng) -> String {
        let sections = [
            "zpool1",
            "zpool2",
            "zpool1/data",
            "zpool1/data/x",
            "zpool2/photos",
            "rpool",
            "template_production",
            "template_backup",
        ];
        let keys = [
            "autosnap",
            "autoprune",
            "recursive",
            "use_template",
            "hourly",
            "process_children_only",
        ];
        let values = [
            "yes",
            "no",
            "on",
            "0",
            "36",
            "production",
            "yes # comment",
            "no ; x",
            "zfs",
            "no ",
        ];
        let indents = ["", "\t", "  "];
        let eol = r.pick(&["\n", "\r\n"]);
        let mut s = String::new();
        if r.next().is_multiple_of(3) {
            s.push_str(&format!("# header comment{eol}{eol}"));
        }
        let first = (r.next() % sections.len() as u64) as usize;
        for n in 0..1 + r.next() as usize % sections.len() {
            s.push_str(&format!(
                "[{}]{eol}",
                sections[(first + n) % sections.len()]
            ));
            s.push_str(&format!("\thourly = 1{eol}"));
            for _ in 0..r.next() % 5 {
                match r.next() % 6 {
                    0 => s.push_str(eol),
                    1 => s.push_str(&format!("{}# note{eol}", r.pick(&indents))),
                    _ => s.push_str(&format!(
                        "{}{}{}={}{}{eol}",
                        r.pick(&indents),
                        r.pick(&keys),
                        r.pick(&["", " "]),
                        r.pick(&["", " ", "\t"]),
                        r.pick(&values)
                    )),
                }
            }
        }
        if r.next().is_multiple_of(4) {
            s.truncate(s.len() - eol.len());
        }
        s
    }

    #[test]
    fn property_idempotent_flips_back_and_touches_only_autosnap() {
        let managed = m(&["zpool1", "zpool2"]);
        let mut r = Rng(0x9e3779b97f4a7c15);
        let mut refused = 0;
        for case in 0..3000 {
            let text = random_conf(&mut r);
            let on = r.next().is_multiple_of(2);
            let first = match rewrite(text.as_bytes(), &managed, on) {
                Ok(x) => x.text,
                Err(_) => {
                    refused += 1;
                    continue;
                }
            };
            let again = rewrite(&first, &managed, on).unwrap().text;
            assert_eq!(again, first, "case {case}: twice is once\n{text}");
            let flipped = rewrite(&first, &managed, !on).unwrap().text;
            let back = rewrite(&flipped, &managed, on).unwrap().text;
            assert_eq!(back, first, "case {case}: flips back byte for byte\n{text}");
            // Outside autosnap lines (and comments moved out of them), the
            // lines are the input's, in order.
            let keep = |t: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(t)
                    .split_inclusive('\n')
                    .filter(|l| {
                        !l.contains("autosnap")
                            && !l.trim_start().starts_with("# comment")
                            && !l.trim_start().starts_with("; x")
                    })
                    .map(String::from)
                    .collect()
            };
            assert_eq!(
                keep(&first).concat().trim_end(),
                keep(text.as_bytes()).concat().trim_end(),
                "case {case}\n{text}"
            );
        }
        assert!(
            refused < 3000 / 2,
            "most random files are rewritten ({refused} refused)"
        );
    }
}
