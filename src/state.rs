//! Files this tool writes: always replaced atomically (temp file in the same
//! directory, fsync, rename, fsync of the directory), so a crash leaves the
//! old or the new content, never half of one.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Replace `path` with `bytes`: mode `mode`, owner `owner` (uid, gid) when given.
pub fn replace_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.zfs-nfs-replica.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The last promotion of this node (the `pre-start` hook), for the operator
/// and for `status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Promotion {
    pub time: String,
    pub node: String,
    pub guest: u32,
    pub promoted: bool,
    /// What was done, one line each; or why nothing was.
    pub actions: Vec<String>,
    pub errors: Vec<String>,
}

pub const PROMOTION_FILE: &str = "last-promotion.json";

pub fn record_promotion(state_dir: &Path, p: &Promotion) -> Result<(), String> {
    let shown = state_dir.display();
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{shown}: {e}"))?;
    let mut text = serde_json::to_string_pretty(p).map_err(|e| e.to_string())?;
    text.push('\n');
    let path = state_dir.join(PROMOTION_FILE);
    replace_atomically(&path, text.as_bytes(), 0o644, None)
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "old").unwrap();
        replace_atomically(&p, b"new", 0o640, None).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // Into a directory that does not exist: an error, nothing created.
        let e = replace_atomically(&d.path().join("no/such"), b"x", 0o644, None);
        assert!(e.is_err());
    }

    #[test]
    fn promotion_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = Promotion {
            time: "2026-11-21T14:00:00Z".into(),
            node: "pve2".into(),
            guest: 103,
            promoted: true,
            actions: vec!["zfs inherit -S readonly zpool1".into()],
            errors: vec![],
        };
        record_promotion(&d.path().join("state"), &p).unwrap();
        let back: Promotion = serde_json::from_str(
            &std::fs::read_to_string(d.path().join("state").join(PROMOTION_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(back, p);
    }
}
