//! Reading and replacing the files the tool keeps or is handed (its config,
//! state and status files, sanoid.conf, token and CA files), safely against
//! whatever may stand at their paths:
//!
//! - a file is opened with `O_NONBLOCK`, then checked to be a regular file
//!   before a byte is read: a FIFO, a socket or a device at the path is an
//!   error at once, never a read (or an `open()`) that waits forever;
//! - reads are bounded (`limit`): a huge file is an error, not memory;
//! - a replacement is written to a new temporary file beside the original
//!   (created exclusively, never through a link), synced, then renamed over
//!   it, so a reader sees the old file or the new one, never half of one.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Large enough for any file of ours (a status file of thousands of
/// datasets), small enough that a wrong path cannot eat the memory.
pub const DEFAULT_LIMIT: u64 = 64 << 20;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a regular file ({kind}): refusing to read it")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: larger than {limit} bytes: refusing to read it")]
    TooLarge { path: String, limit: u64 },
    #[error("{path}: not valid UTF-8")]
    NotUtf8 { path: String },
}

impl ReadError {
    /// What went wrong, without the path (for messages that name it first).
    pub fn reason(&self) -> String {
        match self {
            ReadError::Io { source, .. } => source.to_string(),
            ReadError::NotRegular { kind, .. } => {
                format!("not a regular file ({kind}): refusing to read it")
            }
            ReadError::TooLarge { limit, .. } => {
                format!("larger than {limit} bytes: refusing to read it")
            }
            ReadError::NotUtf8 { .. } => "not valid UTF-8".into(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn kind_of(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFDIR => "a directory",
        _ => "not a file",
    }
}

/// The bytes of the regular file at `path` (symlinks followed), or why not.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let p = || path.display().to_string();
    let io = |source| ReadError::Io { path: p(), source };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: p(),
            kind: kind_of(meta.mode()),
        });
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { path: p(), limit });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow while we read: never past the limit.
    f.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge { path: p(), limit });
    }
    Ok(buf)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit)?).map_err(|_| ReadError::NotUtf8 {
        path: path.display().to_string(),
    })
}

/// [`read_text`], with a missing file as None.
pub fn read_text_if_exists(path: &Path, limit: u64) -> Result<Option<String>, ReadError> {
    match read_text(path, limit) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replace the file at `path` with `bytes`, atomically: a new temporary
/// file in the same directory (created exclusively: a link or FIFO planted
/// at its name is never followed, it is removed first), synced, renamed
/// over `path`, and the directory synced. `mode` and `owner` are set on the
/// new file before it takes the name.
pub fn replace_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.zfs-nfs-replica.tmp"));
    // A leftover of a crashed run, or anything planted there: gone first.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
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

/// Where a path really leads: its symlinks resolved (the file itself must
/// exist). A replacement is written there, so a symlinked file (one kept
/// under configuration management, say) is updated, not replaced by a copy.
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(path)
}

/// Why a JSON file of ours (state, status, history) could not be read or
/// written. Each message names the file; the cause is its `source`.
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    #[error("cannot read: {0}")]
    Read(#[from] ReadError),
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: schema_version {found} (this version reads {expected})", path.display())]
    Schema {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The JSON file at `path`, or None when there is none.
pub fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, JsonFileError> {
    match read_text_if_exists(path, DEFAULT_LIMIT)? {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|source| JsonFileError::Parse {
                path: path.to_path_buf(),
                source,
            }),
    }
}

/// Replace the JSON file at `path` (0644) atomically, creating its directory.
pub fn save_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), JsonFileError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| JsonFileError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let mut text = serde_json::to_string_pretty(v).map_err(JsonFileError::Encode)?;
    text.push('\n');
    replace_atomically(path, text.as_bytes(), 0o644, None).map_err(|source| JsonFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_nothing_waits() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read(&fifo, DEFAULT_LIMIT).unwrap_err();
        assert!(e.to_string().contains("not a regular file (a FIFO)"), "{e}");
        let e = read(d.path(), DEFAULT_LIMIT).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        assert!(read(&d.path().join("none"), 10).unwrap_err().is_not_found());
        let f = d.path().join("f");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read(&f, 10).unwrap(), b"0123456789");
        assert!(matches!(read(&f, 9), Err(ReadError::TooLarge { .. })));
        std::fs::write(&f, b"\xff").unwrap();
        assert!(matches!(read_text(&f, 9), Err(ReadError::NotUtf8 { .. })));
    }

    #[test]
    fn replacing_never_follows_what_stands_at_the_temporary_name() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("state.json");
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join(".state.json.zfs-nfs-replica.tmp"))
            .unwrap();
        replace_atomically(&target, b"new", 0o600, None).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
    }
}
