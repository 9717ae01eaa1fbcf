//! Prints the configuration reference (`docs/configuration.md`); `cargo xtask docs` writes it.

#![allow(clippy::print_stdout, reason = "the reference goes to stdout")]

fn main() {
    print!("{}", config::reference::markdown());
}
