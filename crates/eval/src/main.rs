//! `cargo run --release -p eval [-- --seeds N] [--write docs/accuracy.md]`: runs the accuracy
//! harness over seeds `0..N` (default 50: 200 deploys), prints the report, optionally writes
//! it, and exits non-zero when a figure is below the floor.

use std::process::ExitCode;

#[allow(clippy::print_stdout, clippy::print_stderr, reason = "a command-line report")]
fn main() -> ExitCode {
    let mut seeds = 50u64;
    let mut write = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--seeds", Some(n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                seeds = n.parse().unwrap_or(50)
            }
            ("--write", Some(path)) => write = Some(path),
            _ => {
                eprintln!(
                    "usage: eval [--seeds N (a positive number; 4 deploys each)] [--write FILE.md]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let range = 0..seeds;
    let outcomes: Vec<eval::Outcome> =
        eval::scenarios(range.clone()).iter().map(eval::run).collect();
    let report = eval::report(&outcomes);
    let text = eval::markdown(&report, &range);
    println!("{text}");
    if let Some(path) = write
        && let Err(e) = std::fs::write(&path, &text)
    {
        eprintln!("could not write `{path}`: {e}");
        return ExitCode::FAILURE;
    }
    let failures = eval::Floor::failures(&report);
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("below the floor: {}", failures.join("; "));
        ExitCode::FAILURE
    }
}
