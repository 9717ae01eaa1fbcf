//! One owner per data directory: an exclusive `flock` on `<data dir>/spanblame.lock`.
//!
//! Whoever writes the data directory (the server, `spanblame migrate`, `spanblame token
//! create --data-dir`) holds the lock for as long as it runs. The kernel releases it when the
//! process dies, however it dies, so a `kill -9` never leaves a stale lock behind. The file
//! holds the holder's pid, for the message a second process gets. Without the lock a second
//! server would replay the first one's write-ahead log into a block and delete the segment the
//! first was still appending to, losing what the first then acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{StoreError, io_error};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "spanblame.lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the data directory's lock (creating the directory when needed), or fails at once
    /// with [`StoreError::Locked`] naming the holder's pid when another process has it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The holder wrote its pid after locking; an empty or odd file names nobody.
                let holder =
                    file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked { dir: data_dir.to_owned(), holder_pid: holder });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path)(e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .map_err(io_error(&path))?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).unwrap_err();
        let message = refused.to_string();
        assert!(
            matches!(refused, StoreError::Locked { holder_pid: Some(pid), .. } if pid == std::process::id()),
            "{message}"
        );
        assert!(message.contains(&dir.path().display().to_string()), "{message}");
        assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again once the holder let go");
    }
}
