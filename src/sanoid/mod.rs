//! sanoid's config, so that only the master takes snapshots: every section
//! at or below a managed dataset carries the role's `autosnap`, and every
//! other byte of the file stays as it was.
//!
//! - [`ini`]: the file read exactly as sanoid reads it (Config::IniFiles);
//! - [`rewrite`]: the rule, pure: text in, text out (or why not);
//! - this module: the file on disk: read safely (a regular file, never a
//!   blocking open), written atomically through a symlink to where it
//!   really lives, with a backup of the previous text.
//!
//! docs/sanoid.md has the facts this relies on (how sanoid resolves its
//! sections, what Config::IniFiles accepts), each with its upstream source.

pub mod ini;
pub mod rewrite;

use std::path::{Path, PathBuf};

pub use rewrite::{Rewrite, sanoid_true};

/// Larger than any real sanoid.conf.
const LIMIT: u64 = 4 << 20;

/// A sanoid.conf the tool leaves as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SanoidConfError {
    /// It cannot be read (missing, not a regular file, too large).
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    /// Its content: sanoid could not read it, or the rewrite could not make
    /// the role certain.
    #[error("{path}:{line}: {reason}")]
    Content {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: cannot rewrite: {reason}")]
    Write { path: String, reason: String },
}

/// What the rewrite of the file on disk would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The path as configured.
    pub path: PathBuf,
    /// Where it leads, when that is elsewhere (a symlink).
    pub real: Option<PathBuf>,
    pub rewrite: Rewrite,
    /// The text as it is now.
    pub old: Vec<u8>,
}

impl Planned {
    pub fn changes(&self) -> bool {
        self.rewrite.text != self.old
    }

    /// The file actually written.
    pub fn target(&self) -> &Path {
        self.real.as_deref().unwrap_or(&self.path)
    }

    /// The previous text is kept here.
    pub fn backup(&self) -> PathBuf {
        let t = self.target();
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        t.with_file_name(format!("{name}.bak"))
    }

    /// One line for people: the file (and where its symlink leads), and the
    /// sections that change.
    pub fn describe(&self, on: bool) -> String {
        let value = if on { "yes" } else { "no" };
        let sections = self
            .rewrite
            .changed
            .iter()
            .map(|s| format!("[{s}]"))
            .collect::<Vec<_>>()
            .join(" ");
        let through = match &self.real {
            Some(r) => format!(" (a symlink to {})", r.display()),
            None => String::new(),
        };
        format!(
            "autosnap = {value} in {sections} of {}{through}",
            self.path.display()
        )
    }
}

/// Read the file at `path` and compute its rewrite, changing nothing.
pub fn plan(path: &Path, managed: &[String], on: bool) -> Result<Planned, SanoidConfError> {
    let shown = path.display().to_string();
    let read_err = |reason: String| SanoidConfError::Read {
        path: shown.clone(),
        reason,
    };
    let real = crate::files::resolve(path).map_err(|e| read_err(format!("cannot read: {e}")))?;
    let old = crate::files::read(&real, LIMIT).map_err(|e| read_err(e.to_string()))?;
    let rewrite = rewrite::rewrite(&old, managed, on).map_err(|e| SanoidConfError::Content {
        path: shown.clone(),
        line: e.line,
        reason: e.reason,
    })?;
    Ok(Planned {
        path: path.to_path_buf(),
        real: (real != path).then_some(real),
        rewrite,
        old,
    })
}

/// Carry a plan out: the previous text to `<file>.bak`, the new one
/// atomically in place (same mode and owner), both where the path really
/// leads. Nothing is written when nothing changes.
pub fn apply(p: &Planned) -> Result<(), SanoidConfError> {
    use std::os::unix::fs::MetadataExt;
    if !p.changes() {
        return Ok(());
    }
    let target = p.target();
    let err = |reason: String| SanoidConfError::Write {
        path: p.path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(target).map_err(|e| err(e.to_string()))?;
    let mode = meta.mode() & 0o7777;
    let owner = Some((meta.uid(), meta.gid()));
    crate::files::replace_atomically(&p.backup(), &p.old, mode, owner)
        .map_err(|e| err(format!("{}: {e}", p.backup().display())))?;
    crate::files::replace_atomically(target, &p.rewrite.text, mode, owner)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn m(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const CONF: &str = "[zpool1]\n\tuse_template = production\n\trecursive = yes\n\n[template_production]\n\thourly = 36\n\tautosnap = yes\n";

    #[test]
    fn apply_writes_atomically_keeps_mode_and_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sanoid.conf");
        std::fs::write(&p, CONF).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let planned = plan(&p, &m(&["zpool1"]), false).unwrap();
        assert!(planned.changes());
        assert_eq!(
            planned.describe(false),
            format!("autosnap = no in [zpool1] of {}", p.display())
        );
        apply(&planned).unwrap();
        assert_eq!(std::fs::read_to_string(planned.backup()).unwrap(), CONF);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("\trecursive = yes\n\tautosnap = no\n")
        );
        // No change: nothing written, backup untouched.
        std::fs::write(planned.backup(), "old").unwrap();
        let again = plan(&p, &m(&["zpool1"]), false).unwrap();
        assert!(!again.changes());
        apply(&again).unwrap();
        assert_eq!(std::fs::read_to_string(again.backup()).unwrap(), "old");
        // A file sanoid cannot read is left alone, with its line.
        std::fs::write(&p, "garbage line\n").unwrap();
        let e = plan(&p, &m(&["zpool1"]), true).unwrap_err();
        assert!(e.to_string().contains("sanoid.conf:1: "), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "garbage line\n");
    }

    #[test]
    fn a_symlinked_file_is_written_where_it_leads() {
        let dir = tempfile::tempdir().unwrap();
        let managed = dir.path().join("cm");
        std::fs::create_dir(&managed).unwrap();
        let real = managed.join("sanoid.conf");
        std::fs::write(&real, CONF).unwrap();
        let link = dir.path().join("sanoid.conf");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let planned = plan(&link, &m(&["zpool1"]), false).unwrap();
        assert!(
            planned
                .describe(false)
                .contains(&format!("(a symlink to {})", real.display())),
            "{}",
            planned.describe(false)
        );
        apply(&planned).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::read_to_string(&real)
                .unwrap()
                .contains("autosnap = no")
        );
        assert_eq!(
            std::fs::read_to_string(managed.join("sanoid.conf.bak")).unwrap(),
            CONF
        );
    }

    #[test]
    fn a_fifo_or_a_dangling_link_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("sanoid.conf");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = plan(&fifo, &m(&["zpool1"]), false).unwrap_err();
        assert!(e.to_string().contains("not a regular file (a FIFO)"), "{e}");
        let dangling = dir.path().join("other.conf");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
        let e = plan(&dangling, &m(&["zpool1"]), false).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
