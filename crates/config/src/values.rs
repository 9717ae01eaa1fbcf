//! Values every section reads the same way: durations, byte sizes, secrets from the
//! environment or a file, and serde's `true` default.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

pub(super) fn yes() -> bool {
    true
}

/// A secret named by `secret_env` or `secret_file` (exactly one), at least 16 characters.
pub(super) fn read_secret(
    key: &str,
    secret_env: Option<&str>,
    secret_file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<String> {
    let secret = match (secret_env, secret_file) {
        (Some(var), None) => env.get(var).cloned().with_context(|| {
            format!("{key}: environment variable `{var}` named by `secret_env` is not set")
        })?,
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("{key}: reading `secret_file` `{}`", file.display()))?
            .trim()
            .to_owned(),
        _ => bail!("{key}: set exactly one of `secret_env` or `secret_file`"),
    };
    if secret.len() < 16 {
        bail!(
            "{key}: the secret is shorter than 16 characters; use a long random value (e.g. `openssl rand -hex 32`)"
        );
    }
    Ok(secret)
}

/// `500ms`, `90s`, `30m`, `12h`, `7d`, `2w`.
pub fn parse_duration_nanos(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    match server::parse_duration_nanos(text) {
        Ok(0) | Err(server::DurationError::NotANumber) => bail!(
            "`{text}` is not a duration; write a positive whole number and a unit, like `7d` or `12h`"
        ),
        Ok(nanos) => Ok(nanos),
        Err(server::DurationError::UnknownUnit(unit)) => {
            bail!("unknown duration unit `{unit}` in `{text}`; use ms, s, m, h, d or w")
        }
        Err(server::DurationError::TooLong) => bail!("`{text}` is too long"),
    }
}

/// `500MB`, `16MiB`, `50GiB`, `1TB`, or a plain number of bytes.
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("`{text}` is not a size; write a positive whole number and a unit, like `16MiB` or `50GiB`")
    })?;
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => bail!(
            "unknown size unit `{other}` in `{text}`; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
        ),
    };
    number.checked_mul(unit_bytes).with_context(|| format!("`{text}` is too large"))
}
