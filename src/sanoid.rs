//! Rewriting sanoid's config so that only the master takes snapshots: the
//! `autosnap` value of the managed dataset sections follows the role, and
//! every other byte of the file stays as it was.
//!
//! sanoid reads the file with Perl's Config::IniFiles. Facts that shape this
//! code (shared/REFERENCE.md §2):
//! - comment lines start, after blanks, with `#` or `;`; a trailing `# ...`
//!   on a key line is part of the value (`autosnap = no # x` reads as true),
//!   so the whole value is replaced, never edited around;
//! - keys before the first section, or malformed lines, make sanoid exit:
//!   such a file is left untouched and reported with its line number;
//! - sanoid 2.1 reads a key written twice as true: the rewrite never leaves
//!   `autosnap` twice in a managed section (extra copies are removed).
//!
//! A managed section that is missing is appended as a minimal section
//! (`[DATASET]` with only `autosnap`), which takes sanoid's defaults for
//! everything else.

use std::path::{Path, PathBuf};

/// A sanoid.conf the rewriter cannot read with certainty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: {reason}")]
pub struct SanoidConfError {
    pub path: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Blank or comment: kept as is.
    Other,
    Section(String),
    Key {
        key: String,
    },
}

fn classify(line: &str) -> Result<Line, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
        return Ok(Line::Other);
    }
    if let Some(rest) = t.strip_prefix('[') {
        let Some(name) = rest.strip_suffix(']') else {
            return Err("section header without a closing `]`".into());
        };
        let name = name.trim();
        if name.is_empty() || name.contains(['[', ']']) {
            return Err(format!("invalid section header `{t}`"));
        }
        return Ok(Line::Section(name.to_string()));
    }
    match t.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() && !k.trim().contains(char::is_whitespace) => {
            Ok(Line::Key {
                key: k.trim().to_string(),
            })
        }
        _ => Err(format!(
            "not a comment, `[section]` or `key = value` line: `{}`",
            t.chars().take(60).collect::<String>()
        )),
    }
}

/// The text with the managed sections' `autosnap` set to `on`. Returns the
/// new text (equal to the input when nothing needs to change).
pub fn rewrite(
    text: &str,
    managed: &[String],
    on: bool,
    origin: &str,
) -> Result<String, SanoidConfError> {
    let value = if on { "yes" } else { "no" };
    let err = |line: usize, reason: String| SanoidConfError {
        path: origin.to_string(),
        line,
        reason,
    };
    // Split keeping line endings, so untouched lines are copied byte for byte.
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut kinds = Vec::with_capacity(lines.len());
    let mut in_section = false;
    for (i, l) in lines.iter().enumerate() {
        let body = l.trim_end_matches(['\n', '\r']);
        let k = classify(body).map_err(|r| err(i + 1, r))?;
        match &k {
            Line::Section(_) => in_section = true,
            Line::Key { .. } if !in_section => {
                return Err(err(
                    i + 1,
                    "key before the first section (sanoid refuses this file)".into(),
                ));
            }
            _ => {}
        }
        kinds.push(k);
    }
    if !kinds.iter().any(|k| matches!(k, Line::Section(_))) {
        return Err(err(
            1,
            "no section at all (sanoid refuses this file)".into(),
        ));
    }
    // A managed section written twice: which copy's autosnap wins is not
    // certain, so the file is not touched.
    let mut seen = std::collections::BTreeSet::new();
    for (i, k) in kinds.iter().enumerate() {
        if let Line::Section(name) = k
            && managed.contains(name)
            && !seen.insert(name.as_str())
        {
            return Err(err(i + 1, format!("section [{name}] appears twice")));
        }
    }

    let mut out = String::with_capacity(text.len() + 64);
    let mut current: Option<&str> = None;
    let mut seen_autosnap = false;
    // Where to insert a missing autosnap: after the last key line of the section.
    let mut pending_insert: Option<(usize, String)> = None;
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut skip: Vec<bool> = vec![false; lines.len()];
    let mut replace: Vec<Option<String>> = vec![None; lines.len()];
    let mut found_sections: Vec<&str> = Vec::new();
    let is_managed = |s: &str| managed.iter().any(|m| m == s);

    let close = |current: Option<&str>,
                 seen: bool,
                 pending: &mut Option<(usize, String)>,
                 inserts: &mut Vec<(usize, String)>| {
        if let (Some(s), false) = (current, seen)
            && is_managed(s)
            && let Some(p) = pending.take()
        {
            inserts.push(p);
        }
        *pending = None;
    };

    for (i, k) in kinds.iter().enumerate() {
        match k {
            Line::Section(name) => {
                close(current, seen_autosnap, &mut pending_insert, &mut inserts);
                current = Some(name.as_str());
                seen_autosnap = false;
                found_sections.push(name.as_str());
                // Default insertion point: right after the header, indented with a tab.
                pending_insert = Some((i, "\t".to_string()));
            }
            Line::Key { key } => {
                let Some(sec) = current else { continue };
                if !is_managed(sec) {
                    continue;
                }
                let line = lines[i];
                let indent: String = line
                    .chars()
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect();
                if key == "autosnap" {
                    if seen_autosnap {
                        // A second copy: sanoid 2.1 would read it as true.
                        skip[i] = true;
                    } else {
                        seen_autosnap = true;
                        replace[i] = Some(set_value(line, value));
                    }
                } else {
                    pending_insert = Some((i, indent));
                }
            }
            Line::Other => {}
        }
    }
    close(current, seen_autosnap, &mut pending_insert, &mut inserts);

    for (i, l) in lines.iter().enumerate() {
        if !skip[i] {
            match &replace[i] {
                Some(r) => out.push_str(r),
                None => out.push_str(l),
            }
        }
        for (_, indent) in inserts.iter().filter(|(at, _)| *at == i) {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{indent}autosnap = {value}\n"));
        }
    }
    for m in managed {
        if !found_sections.contains(&m.as_str()) {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("\n# added by zfs-nfs-replica: autosnap follows this node's role\n[{m}]\n\tautosnap = {value}\n"));
        }
    }
    Ok(out)
}

/// `key = value` with the value replaced, keeping the key's indentation, the
/// spacing around `=` and the line ending.
fn set_value(line: &str, value: &str) -> String {
    let ending = if line.ends_with("\r\n") {
        "\r\n"
    } else if line.ends_with('\n') {
        "\n"
    } else {
        ""
    };
    let body = &line[..line.len() - ending.len()];
    let eq = body.find('=').expect("a key line has `=`");
    let after = &body[eq + 1..];
    let space: String = after
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    format!("{}={space}{value}{ending}", &body[..eq])
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Rewritten { backup: PathBuf },
}

/// Rewrite the file at `path` if needed: temp file in the same directory,
/// fsync, rename, same mode and owner; the previous file is kept as
/// `<path>.bak` once per change. A file the rewriter cannot read with
/// certainty is left untouched.
pub fn apply(path: &Path, managed: &[String], on: bool) -> Result<Applied, String> {
    use std::os::unix::fs::MetadataExt;
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: cannot read: {e}"))?;
    let new = rewrite(&text, managed, on, &origin).map_err(|e| e.to_string())?;
    if new == text {
        return Ok(Applied::Unchanged);
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("{origin}: {e}"))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let backup = dir.join(format!("{name}.bak"));
    std::fs::copy(path, &backup)
        .and_then(|_| {
            crate::state::replace_atomically(
                path,
                new.as_bytes(),
                meta.mode() & 0o7777,
                Some((meta.uid(), meta.gid())),
            )
        })
        .map_err(|e| format!("{origin}: cannot rewrite: {e}"))?;
    Ok(Applied::Rewritten { backup })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const CONF: &str = "# sanoid.conf for the NFS pools\n\
[zpool1]\n\tuse_template = production\n\trecursive = yes\n\tautosnap = yes # set by the old script\n\n\
[zpool2]\n    use_template = production\n    recursive = zfs\n\n\
[rpool/data]\n\tautosnap = yes\n\n\
; templates\n[template_production]\n\tfrequently = 0\n\thourly = 36\n\tautosnap = yes\n\tautoprune = yes\n";

    #[test]
    fn standby_turns_managed_autosnap_off_and_touches_nothing_else() {
        let out = rewrite(CONF, &m(&["zpool1", "zpool2"]), false, "s.conf").unwrap();
        let want = CONF
            .replace(
                "\tautosnap = yes # set by the old script\n",
                "\tautosnap = no\n",
            )
            .replace(
                "    recursive = zfs\n",
                "    recursive = zfs\n    autosnap = no\n",
            );
        assert_eq!(out, want);
        // Unmanaged sections and templates keep their autosnap.
        assert!(out.contains("[rpool/data]\n\tautosnap = yes\n"));
        assert!(out.contains("\tautosnap = yes\n\tautoprune = yes\n"));
    }

    #[test]
    fn rewriting_twice_is_a_no_op_and_master_turns_it_back_on() {
        let standby = rewrite(CONF, &m(&["zpool1", "zpool2"]), false, "s").unwrap();
        assert_eq!(
            rewrite(&standby, &m(&["zpool1", "zpool2"]), false, "s").unwrap(),
            standby
        );
        let master = rewrite(&standby, &m(&["zpool1", "zpool2"]), true, "s").unwrap();
        assert!(master.contains("\trecursive = yes\n\tautosnap = yes\n"));
        assert_eq!(
            rewrite(&master, &m(&["zpool1", "zpool2"]), true, "s").unwrap(),
            master
        );
    }

    #[test]
    fn duplicate_keys_are_collapsed_and_missing_sections_added() {
        let text = "[zpool1]\n\tautosnap = no\n\tautosnap = no\n";
        let out = rewrite(text, &m(&["zpool1", "zpool9"]), false, "s").unwrap();
        assert_eq!(out.matches("\tautosnap = ").count(), 2, "{out}");
        assert!(
            out.starts_with("[zpool1]\n\tautosnap = no\n\n# added by zfs-nfs-replica"),
            "{out}"
        );
        assert!(out.ends_with("[zpool9]\n\tautosnap = no\n"), "{out}");
    }

    #[test]
    fn keeps_crlf_and_spacing() {
        let text = "[zpool1]\r\n  autosnap=yes\r\n";
        assert_eq!(
            rewrite(text, &m(&["zpool1"]), false, "s").unwrap(),
            "[zpool1]\r\n  autosnap=no\r\n"
        );
    }

    #[test]
    fn unreadable_files_are_refused_with_the_line() {
        let cases = [
            ("autosnap = yes\n[zpool1]\n", 1, "before the first section"),
            ("[zpool1]\n\tautosnap yes\n", 2, "not a comment"),
            ("[zpool1\n", 1, "closing"),
            ("# only a comment\n", 1, "no section"),
            ("", 1, "no section"),
            ("[zpool1]\n[zpool2]\n[zpool1]\n", 3, "appears twice"),
        ];
        for (text, line, want) in cases {
            let e = rewrite(text, &m(&["zpool1"]), true, "/etc/sanoid/sanoid.conf").unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("/etc/sanoid/sanoid.conf:{line}: "))
                    && e.reason.contains(want),
                "{text:?}: {e}"
            );
        }
    }

    /// A small deterministic generator (xorshift), so the property tests need
    /// no extra crate and fail reproducibly.
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
            "daily",
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
        ];
        let indents = ["", "\t", "  ", "    "];
        let mut s = String::new();
        if r.next().is_multiple_of(2) {
            s.push_str("# header comment\n\n");
        }
        let first = (r.next() % sections.len() as u64) as usize;
        for n in 0..1 + r.next() as usize % sections.len() {
            s.push_str(&format!("[{}]\n", sections[(first + n) % sections.len()]));
            for _ in 0..r.next() % 6 {
                match r.next() % 6 {
                    0 => s.push('\n'),
                    1 => s.push_str(&format!(
                        "{}# note about {}\n",
                        r.pick(&indents),
                        r.pick(&keys)
                    )),
                    _ => s.push_str(&format!(
                        "{}{}{}={}{}\n",
                        r.pick(&indents),
                        r.pick(&keys),
                        r.pick(&["", " "]),
                        r.pick(&["", " ", "\t"]),
                        r.pick(&values)
                    )),
                }
            }
        }
        s
    }

    fn autosnap_lines(text: &str, managed: &[String]) -> Vec<(String, usize)> {
        let mut cur = String::new();
        let mut v = Vec::new();
        for l in text.lines() {
            match classify(l) {
                Ok(Line::Section(s)) => cur = s,
                Ok(Line::Key { key }) if key == "autosnap" && managed.contains(&cur) => {
                    v.push((cur.clone(), 1))
                }
                _ => {}
            }
        }
        v
    }

    #[test]
    fn property_only_managed_autosnap_lines_change_and_twice_is_a_no_op() {
        let managed = m(&["zpool1", "zpool2"]);
        let mut r = Rng(0x9e3779b97f4a7c15);
        for case in 0..2000 {
            let text = random_conf(&mut r);
            let on = r.next().is_multiple_of(2);
            let out = rewrite(&text, &managed, on, "p")
                .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
            // Twice is a no-op.
            assert_eq!(
                rewrite(&out, &managed, on, "p").unwrap(),
                out,
                "case {case}"
            );
            // Removing every managed autosnap line from both sides leaves the
            // same text (ignoring the sections we appended at the end).
            let strip = |t: &str| {
                let mut cur = String::new();
                let mut kept = String::new();
                for l in t.split_inclusive('\n') {
                    match classify(l.trim_end_matches(['\n', '\r'])) {
                        Ok(Line::Section(s)) => cur = s,
                        Ok(Line::Key { key }) if key == "autosnap" && managed.contains(&cur) => {
                            continue;
                        }
                        _ => {}
                    }
                    kept.push_str(l);
                }
                kept
            };
            let appended = out
                .find("\n# added by zfs-nfs-replica")
                .map_or(out.len(), |p| p);
            let base_out = &out[..appended];
            assert_eq!(
                strip(base_out),
                strip(&text),
                "case {case}: only managed autosnap lines may differ\n--- in\n{text}--- out\n{out}"
            );
            // Every managed section that exists says exactly what the role wants, once.
            let want = if on { "yes" } else { "no" };
            let mut per_section: std::collections::BTreeMap<String, usize> = Default::default();
            for (s, n) in autosnap_lines(&out, &managed) {
                *per_section.entry(s).or_default() += n;
            }
            let mut cur = String::new();
            for l in out.lines() {
                match classify(l) {
                    Ok(Line::Section(s)) => cur = s,
                    Ok(Line::Key { key }) if key == "autosnap" && managed.contains(&cur) => {
                        assert_eq!(
                            l.split_once('=').unwrap().1.trim(),
                            want,
                            "case {case}: {l}"
                        );
                    }
                    _ => {}
                }
            }
            for sec in &managed {
                assert_eq!(
                    per_section.get(sec).copied(),
                    Some(1),
                    "case {case}: `{sec}` needs exactly one autosnap\n{out}"
                );
            }
        }
    }

    #[test]
    fn apply_writes_atomically_keeps_mode_and_a_backup() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sanoid.conf");
        std::fs::write(&p, CONF).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let r = apply(&p, &m(&["zpool1"]), false).unwrap();
        assert_eq!(
            r,
            Applied::Rewritten {
                backup: dir.path().join("sanoid.conf.bak")
            }
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sanoid.conf.bak")).unwrap(),
            CONF
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("\tautosnap = no\n")
        );
        // No change: nothing written, backup untouched.
        std::fs::write(dir.path().join("sanoid.conf.bak"), "old").unwrap();
        assert_eq!(
            apply(&p, &m(&["zpool1"]), false).unwrap(),
            Applied::Unchanged
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("sanoid.conf.bak")).unwrap(),
            "old"
        );
        // An unreadable file is left alone.
        std::fs::write(&p, "garbage line\n").unwrap();
        assert!(
            apply(&p, &m(&["zpool1"]), true)
                .unwrap_err()
                .contains(":1: ")
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "garbage line\n");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temp file left: {leftovers:?}");
    }
}
