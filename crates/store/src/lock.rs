//! One owner per data directory: an exclusive `flock` on `<data dir>/spanblame.lock`.
//!
//! Whoever writes the data directory (the server, `spanblame migrate`, `spanblame token
//! create --data-dir`) holds the lock for as long as it runs. The kernel releases it when the
//! process dies, however it dies, so a `kill -9` never leaves a stale lock behind. The file
//! holds the holder's pid, for the message a second process gets. Without the lock a second
//! server would replay the first one's write-ahead log into a block and delete the segment the
//! first was still appending to, losing what the first then acknowledged.
//!
//! The holder also checks the directory's format (`<data dir>/FORMAT`): a directory written by
//! a newer spanblame is refused with both versions named, before anything in it is touched,
//! and a directory without the file (new, or written before the file existed) gets it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{StoreError, io_error};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "spanblame.lock";

/// The format marker's name inside the data directory.
pub const FORMAT_FILE: &str = "FORMAT";

/// The data directory's format this build writes and reads: its block files, WAL records and
/// layout. Raised when an older spanblame could no longer read what a newer one writes.
pub const DATA_DIR_FORMAT: u32 = 1;

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
        check_format(data_dir)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuses a directory of a newer format; marks one without a marker with this build's.
fn check_format(data_dir: &Path) -> Result<(), StoreError> {
    let path = data_dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found =
                text.split_whitespace().last().and_then(|n| n.parse::<u32>().ok()).ok_or_else(
                    || StoreError::Format {
                        dir: data_dir.to_owned(),
                        found: text.trim().to_owned(),
                        known: DATA_DIR_FORMAT,
                    },
                )?;
            if found > DATA_DIR_FORMAT {
                return Err(StoreError::Format {
                    dir: data_dir.to_owned(),
                    found: found.to_string(),
                    known: DATA_DIR_FORMAT,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = format!("spanblame data directory format {DATA_DIR_FORMAT}\n");
            std::fs::write(&path, text)
                .and_then(|()| File::open(&path)?.sync_all())
                .map_err(io_error(&path))?;
            crate::wal::sync_dir(data_dir)
        }
        Err(e) => Err(io_error(&path)(e)),
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

    #[test]
    fn a_directory_of_a_newer_format_is_refused_and_an_unmarked_one_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        drop(DataDirLock::acquire(dir.path()).unwrap());
        let marker = std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap();
        assert_eq!(marker.trim(), format!("spanblame data directory format {DATA_DIR_FORMAT}"));
        std::fs::write(dir.path().join(FORMAT_FILE), "spanblame data directory format 9\n")
            .unwrap();
        let message = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("format 9")
                && message.contains(&format!("this spanblame (format {DATA_DIR_FORMAT})")),
            "{message}"
        );
        assert!(message.contains("run the newer spanblame"), "{message}");
    }
}
