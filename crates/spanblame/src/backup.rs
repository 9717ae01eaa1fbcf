//! `spanblame backup`, `spanblame backup verify` and `spanblame restore`: an online backup of
//! an embedded data directory while its server runs (`store::backup` says how it stays
//! consistent), its verification, and restore into a new data directory. Progress goes to
//! stderr on a terminal; the summary to stdout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// The data directory to back up (the server's `storage.data_dir`; it may be running).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where to write the backup: a new or empty directory. Blocks are hard-linked when it is
    /// on the same file system (they never change), copied otherwise.
    #[arg(long, value_name = "DEST")]
    to: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum BackupCommand {
    /// Check a backup: complete, every file as `SHA256SUMS` says, the database sound and the
    /// audit chain intact.
    Verify {
        /// The backup's directory.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// The backup to restore (it is verified first).
    #[arg(long, value_name = "DEST")]
    from: PathBuf,
    /// A new or empty data directory to restore into; start the server with it.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
}

/// Progress on stderr, rewritten in place, when a person is watching.
fn progress() -> impl FnMut(&str) {
    let terminal = std::io::stderr().is_terminal();
    move |step: &str| {
        if terminal {
            let _ = write!(std::io::stderr(), "\r\x1b[2K{step}");
            let _ = std::io::stderr().flush();
        }
    }
}

fn done() {
    if std::io::stderr().is_terminal() {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

/// `1 WAL segment`, `3 blocks`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

pub(crate) fn run_backup(args: BackupArgs) -> anyhow::Result<()> {
    if let Some(BackupCommand::Verify { dir }) = args.command {
        let summary = store::backup::verify(&dir)
            .with_context(|| format!("verifying the backup `{}`", dir.display()))?;
        return crate::admin::out(&format!(
            "backup `{}` is intact: {}, {}, {}; the audit chain verifies",
            dir.display(),
            count(summary.wal_segments, "WAL segment"),
            count(summary.blocks, "block"),
            mib(summary.bytes)
        ));
    }
    let (Some(data_dir), Some(to)) = (args.data_dir, args.to) else {
        bail!(
            "`spanblame backup` needs `--data-dir DIR --to DEST` (or `spanblame backup verify DEST`)"
        );
    };
    let summary = store::backup::backup(&data_dir, &to, &mut progress())
        .with_context(|| format!("backing `{}` up into `{}`", data_dir.display(), to.display()))?;
    done();
    crate::admin::out(&format!(
        "backed `{}` up into `{}`: {}, {}, the metadata and the audit key, {}; check it with `spanblame backup verify {}`",
        data_dir.display(),
        to.display(),
        count(summary.wal_segments, "WAL segment"),
        count(summary.blocks, "block"),
        mib(summary.bytes),
        to.display()
    ))
}

pub(crate) fn run_restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let summary = store::backup::restore(&args.from, &args.data_dir, &mut progress())
        .with_context(|| {
            format!("restoring `{}` into `{}`", args.from.display(), args.data_dir.display())
        })?;
    done();
    crate::admin::out(&format!(
        "restored `{}` into `{}` ({}, {}, {}); start the server with `--data-dir {}`: it replays the WAL as after a crash",
        args.from.display(),
        args.data_dir.display(),
        count(summary.wal_segments, "WAL segment"),
        count(summary.blocks, "block"),
        mib(summary.bytes),
        args.data_dir.display()
    ))
}
