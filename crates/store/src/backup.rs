//! Online backup of an embedded data directory while its server runs, the backup's
//! verification, and restore into a new data directory.
//!
//! The server holds the directory's lock; a backup never takes it. It copies, in this order:
//! 1. `FORMAT`, `audit.key` and `audit.witness` (the witness is a point the audit chain has
//!    passed, so the database copied after it holds that point);
//! 2. every WAL segment (an append racing the copy leaves a torn tail, which recovery cuts;
//!    every span acknowledged before the backup began is in a complete, synced record);
//! 3. the metadata database, through SQLite's online backup API in one step (a consistent
//!    snapshot);
//! 4. the blocks whose sketches that snapshot holds (their last WAL segment is at or below its
//!    sketch watermark), hard-linked (copied across file systems). A block sealed after the
//!    snapshot is left out: its WAL segments, copied in step 2, hold its spans, and recovery
//!    replays them into the head and the sketches, so each span counts once. Should a block
//!    vanish while the copy runs (compaction merged it, retention deleted it), steps 2 to 4
//!    start again;
//! 5. `SHA256SUMS` (the format `sha256sum -c` reads) and `backup.info`, last: a backup without
//!    them is incomplete.
//!
//! Git mirrors are not copied: they are clones the server fetches again.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{StoreError, io_error};

use crate::access::{AUDIT_WITNESS_FILE, KEY_FILE};
use crate::embedded::{BLOCK_DIR, WAL_DIR};
use crate::metadata::SQLITE_FILE;

/// Small files copied first: the directory's format marker, the audit key and its witness.
const SMALL_FILES: [&str; 3] = [crate::lock::FORMAT_FILE, KEY_FILE, AUDIT_WITNESS_FILE];
const SUMS_FILE: &str = "SHA256SUMS";
const INFO_FILE: &str = "backup.info";
/// `backup.info`'s `format`: what this build writes and reads.
const BACKUP_FORMAT: u32 = 1;
/// Copies attempted before a backup racing compaction gives up.
const MAX_ATTEMPTS: usize = 5;

/// What a backup, a verification or a restore did, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    pub wal_segments: usize,
    pub blocks: usize,
    pub bytes: u64,
    /// The database snapshot's sketch watermark: blocks up to this WAL segment are in.
    pub sketch_watermark: u64,
}

/// Steps as they happen, for progress on a terminal.
pub trait Progress {
    fn step(&mut self, what: &str);
}

impl<F: FnMut(&str)> Progress for F {
    fn step(&mut self, what: &str) {
        self(what)
    }
}

/// Backs `data_dir` up into `dest` (new, or an empty directory) while its server may run.
pub fn backup(
    data_dir: &Path,
    dest: &Path,
    progress: &mut dyn Progress,
) -> Result<BackupSummary, StoreError> {
    if !data_dir.join(SQLITE_FILE).exists() {
        return Err(invalid(format!(
            "`{}` holds no spanblame data (no `{SQLITE_FILE}`); pass the server's `--data-dir` (a fleet's data is in PostgreSQL and ClickHouse: back those up with their own tools)",
            data_dir.display()
        )));
    }
    ensure_empty(dest, "the backup's destination")?;
    for name in SMALL_FILES {
        let from = data_dir.join(name);
        if from.exists() {
            fs::copy(&from, dest.join(name)).map_err(io_error(&from))?;
        }
    }
    for attempt in 1..=MAX_ATTEMPTS {
        for dir in [WAL_DIR, BLOCK_DIR] {
            let path = dest.join(dir);
            if path.exists() {
                fs::remove_dir_all(&path).map_err(io_error(&path))?;
            }
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        let wal_segments = copy_wal(data_dir, dest, progress)?;
        progress.step("copying the metadata database (SQLite's online backup)");
        let sketch_watermark =
            snapshot_sqlite(&data_dir.join(SQLITE_FILE), &dest.join(SQLITE_FILE))?;
        match link_blocks(data_dir, dest, sketch_watermark, progress)? {
            Some(blocks) => {
                progress.step("writing SHA256SUMS");
                let bytes = write_sums(dest)?;
                let info = format!(
                    "format = {BACKUP_FORMAT}\nspanblame = {}\nsketch_watermark = {sketch_watermark}\n",
                    env!("CARGO_PKG_VERSION")
                );
                let path = dest.join(INFO_FILE);
                fs::write(&path, info).map_err(io_error(&path))?;
                sync_tree(dest)?;
                return Ok(BackupSummary { wal_segments, blocks, bytes, sketch_watermark });
            }
            None => progress.step(&format!(
                "a block changed during the copy (compaction or retention); starting again ({attempt} of {MAX_ATTEMPTS})"
            )),
        }
    }
    Err(invalid(format!(
        "blocks kept changing during {MAX_ATTEMPTS} copies; try again when compaction is quiet"
    )))
}

/// Checks a backup: complete, every file as its checksum says, the database sound and the
/// audit chain intact.
pub fn verify(dest: &Path) -> Result<BackupSummary, StoreError> {
    let info_path = dest.join(INFO_FILE);
    let info = fs::read_to_string(&info_path).map_err(|_| {
        invalid(format!(
            "`{}` is not a complete spanblame backup (no `{INFO_FILE}`: the backup did not finish)",
            dest.display()
        ))
    })?;
    let field = |key: &str| {
        info.lines().find_map(|l| {
            l.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim().parse::<u64>().ok()
        })
    };
    if field("format") != Some(u64::from(BACKUP_FORMAT)) {
        return Err(invalid(format!(
            "`{}` has a backup format this spanblame does not read (it reads format {BACKUP_FORMAT}); use the spanblame that wrote it",
            info_path.display()
        )));
    }
    let sums_path = dest.join(SUMS_FILE);
    let sums = fs::read_to_string(&sums_path).map_err(io_error(&sums_path))?;
    let mut summary = BackupSummary {
        sketch_watermark: field("sketch_watermark").unwrap_or(0),
        ..BackupSummary::default()
    };
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let Some((expected, name)) = line.split_once("  ") else {
            return Err(invalid(format!(
                "`{}`: `{line}` is not `<sha256>  <file>`",
                sums_path.display()
            )));
        };
        let path = dest.join(name);
        let (actual, bytes) = sha256(&path)?;
        if actual != expected {
            return Err(invalid(format!(
                "`{}` does not match its checksum in `{SUMS_FILE}`: the backup is damaged",
                path.display()
            )));
        }
        summary.bytes += bytes;
        match name.split_once('/') {
            Some((WAL_DIR, _)) => summary.wal_segments += 1,
            Some((BLOCK_DIR, _)) => summary.blocks += 1,
            _ => {}
        }
    }
    let conn = rusqlite::Connection::open_with_flags(
        dest.join(SQLITE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .map_err(sqlite)?;
    let check: String =
        conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).map_err(sqlite)?;
    if check != "ok" {
        return Err(invalid(format!("the backup's metadata database is damaged: {check}")));
    }
    let accounts = crate::Accounts::open_read_only(dest, &crate::MetadataBackend::Sqlite)?;
    if let Err(broken) = accounts.verify_audit()? {
        return Err(invalid(format!("the backup's audit log does not verify: {broken}")));
    }
    Ok(summary)
}

/// Restores a verified backup into `data_dir` (new, or an empty directory); the server
/// started on it recovers the WAL segments as after a crash.
pub fn restore(
    from: &Path,
    data_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<BackupSummary, StoreError> {
    progress.step("verifying the backup");
    let summary = verify(from)?;
    ensure_empty(data_dir, "the data directory to restore into")?;
    let sums = fs::read_to_string(from.join(SUMS_FILE)).map_err(io_error(&from.join(SUMS_FILE)))?;
    let names: Vec<&str> =
        sums.lines().filter_map(|l| l.split_once("  ").map(|(_, n)| n)).collect();
    for (i, name) in names.iter().enumerate() {
        if i % 50 == 0 {
            progress.step(&format!("copying files: {i} of {}", names.len()));
        }
        let (source, target) = (from.join(name), data_dir.join(name));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        fs::copy(&source, &target).map_err(io_error(&source))?;
    }
    sync_tree(data_dir)?;
    Ok(summary)
}

fn invalid(message: String) -> StoreError {
    StoreError::Backup(message)
}

fn sqlite(e: rusqlite::Error) -> StoreError {
    StoreError::Metadata(e.to_string())
}

fn ensure_empty(dir: &Path, what: &str) -> Result<(), StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => match entries.count() {
            0 => Ok(()),
            _ => Err(invalid(format!(
                "{what} `{}` is not empty; give a new or empty directory",
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_error(dir))
        }
        Err(e) => Err(io_error(dir)(e)),
    }
}

/// Files of `dir` with `extension`, sorted by name.
fn files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, StoreError> {
    let mut found: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == extension))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error(dir)(e)),
    };
    found.sort();
    Ok(found)
}

fn copy_wal(
    data_dir: &Path,
    dest: &Path,
    progress: &mut dyn Progress,
) -> Result<usize, StoreError> {
    let wal = data_dir.join(WAL_DIR);
    let segments = if wal.exists() { crate::wal::list_segments(&wal)? } else { Vec::new() };
    progress.step(&format!("copying {} WAL segments", segments.len()));
    let mut copied = 0;
    for seq in segments {
        let segment = crate::wal::segment_path(&wal, seq);
        match fs::copy(&segment, crate::wal::segment_path(&dest.join(WAL_DIR), seq)) {
            Ok(_) => copied += 1,
            // Sealed into a block since the listing: that block is in the snapshot's reach.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&segment)(e)),
        }
    }
    Ok(copied)
}

/// Copies the database in one step of the online backup API; returns its sketch watermark.
fn snapshot_sqlite(source: &Path, target: &Path) -> Result<u64, StoreError> {
    let from =
        rusqlite::Connection::open_with_flags(source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite)?;
    from.busy_timeout(std::time::Duration::from_secs(30)).map_err(sqlite)?;
    let mut to = rusqlite::Connection::open(target).map_err(sqlite)?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut to).map_err(sqlite)?;
        // Every page in one step, under one read lock: a consistent snapshot. Busy while the
        // server commits: try again shortly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match backup.step(-1).map_err(sqlite)? {
                rusqlite::backup::StepResult::Done => break,
                _ if std::time::Instant::now() > deadline => {
                    return Err(invalid(format!(
                        "`{}` stayed busy for a minute; try the backup again",
                        source.display()
                    )));
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(50)),
            }
        }
    }
    crate::sketches::watermark(&to)
}

/// The last WAL segment a block holds, from its name (`<last>.blk`, `<last>-<first>.blk`).
fn last_wal_segment(block: &Path) -> Option<u64> {
    let name = block.file_name()?.to_str()?;
    name.split(['.', '-']).next()?.parse().ok()
}

/// Links the blocks up to `watermark`; `None` when one vanished before it was linked.
fn link_blocks(
    data_dir: &Path,
    dest: &Path,
    watermark: u64,
    progress: &mut dyn Progress,
) -> Result<Option<usize>, StoreError> {
    let blocks: Vec<PathBuf> = files(&data_dir.join(BLOCK_DIR), "blk")?
        .into_iter()
        .filter(|b| last_wal_segment(b).is_some_and(|last| last <= watermark))
        .collect();
    for (i, block) in blocks.iter().enumerate() {
        if i % 20 == 0 {
            progress.step(&format!("linking blocks: {i} of {}", blocks.len()));
        }
        let target =
            dest.join(BLOCK_DIR).join(block.file_name().expect("a listed file has a name"));
        let linked = fs::hard_link(block, &target).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Err(e),
            // Another file system: copy.
            _ => fs::copy(block, &target).map(|_| ()),
        });
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(block)(e)),
        }
    }
    Ok(Some(blocks.len()))
}

fn sha256(path: &Path) -> Result<(String, u64), StoreError> {
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buffer).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

/// Writes `SHA256SUMS` for every file of the backup; returns their bytes.
fn write_sums(dest: &Path) -> Result<u64, StoreError> {
    let mut names: Vec<String> = vec![SQLITE_FILE.to_owned()];
    names.extend(SMALL_FILES.iter().filter(|n| dest.join(n).exists()).map(|n| (*n).to_owned()));
    for (dir, extension) in [(WAL_DIR, "wal"), (BLOCK_DIR, "blk")] {
        for path in files(&dest.join(dir), extension)? {
            let name = path.file_name().and_then(|n| n.to_str()).expect("names are ASCII");
            names.push(format!("{dir}/{name}"));
        }
    }
    let mut text = String::new();
    let mut total = 0;
    for name in names {
        let (digest, bytes) = sha256(&dest.join(&name))?;
        total += bytes;
        text.push_str(&format!("{digest}  {name}\n"));
    }
    let path = dest.join(SUMS_FILE);
    fs::write(&path, text).map_err(io_error(&path))?;
    Ok(total)
}

/// Syncs every file and directory of `dir` (one level of subdirectories).
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    let mut dirs = vec![dir.to_owned()];
    for sub in [WAL_DIR, BLOCK_DIR] {
        if dir.join(sub).exists() {
            dirs.push(dir.join(sub));
        }
    }
    for d in &dirs {
        for entry in fs::read_dir(d).map_err(io_error(d))?.filter_map(Result::ok) {
            let path = entry.path();
            if path.is_file() {
                fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io_error(&path))?;
            }
        }
        crate::wal::sync_dir(d)?;
    }
    Ok(())
}
