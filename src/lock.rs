//! Per-pool run locks: a non-blocking exclusive `flock` on
//! `<run_dir>/pool-<name>.lock`, held for the whole pool run and released when
//! the guard drops (or the process dies). The file is never deleted: deleting a
//! lock file while another process waits on it lets two runs hold "the" lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("pool {pool} is busy: another run holds {path} ({holder})")]
    Busy {
        pool: String,
        path: PathBuf,
        holder: String,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while a pool is replicated.
#[derive(Debug)]
pub struct PoolLock {
    _file: File,
    pub path: PathBuf,
}

pub fn lock_path(run_dir: &Path, pool: &str) -> PathBuf {
    // Pool names cannot contain `/`, but a configured root may be a dataset.
    run_dir.join(format!("pool-{}.lock", pool.replace('/', "%")))
}

/// The lock file, never blocking on what stands at its path (a FIFO there
/// is an error, not a wait) and never through a symlink.
fn open_lock_file(path: &Path, create: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

pub fn try_lock_pool(run_dir: &Path, pool: &str) -> Result<PoolLock, LockError> {
    let path = lock_path(run_dir, pool);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(run_dir).map_err(io)?;
    let mut file = open_lock_file(&path, true).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(LockError::Busy {
                pool: pool.to_string(),
                holder: read_holder(&mut file),
                path,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    // Record who holds it, for `status` and for the busy message above.
    let holder = format!(
        "pid {} since {}\n",
        std::process::id(),
        crate::units::now_stamp()
    );
    let _ = file
        .set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(holder.as_bytes()));
    Ok(PoolLock { _file: file, path })
}

/// Who holds a pool's lock right now, if anyone, without taking it for
/// longer than a probe and without creating or writing anything (`status`).
pub fn holder(run_dir: &Path, pool: &str) -> Option<String> {
    let mut file = open_lock_file(&lock_path(run_dir, pool), false).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(read_holder(&mut file)),
        Err(TryLockError::Error(_)) => None,
    }
}

fn read_holder(file: &mut File) -> String {
    let mut s = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut s));
    let s = s.trim();
    if s.is_empty() {
        "holder unknown".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_busy_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = try_lock_pool(dir.path(), "zpool1").unwrap();
        let e = try_lock_pool(dir.path(), "zpool1").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, LockError::Busy { .. }));
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(
            holder(dir.path(), "zpool1").unwrap().starts_with("pid "),
            "status sees the holder"
        );
        assert_eq!(holder(dir.path(), "zpool9"), None, "no lock file: nobody");
        // Other pools are independent.
        let _b = try_lock_pool(dir.path(), "zpool2").unwrap();
        let path = a.path.clone();
        drop(a);
        assert!(path.exists(), "the lock file is never deleted");
        assert_eq!(holder(dir.path(), "zpool1"), None, "released");
        try_lock_pool(dir.path(), "zpool1").unwrap();
    }
}
