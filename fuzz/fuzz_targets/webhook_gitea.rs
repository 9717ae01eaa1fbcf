//! Gitea webhook deliveries: see `webhook.rs`.

#![no_main]

#[path = "webhook.rs"]
mod webhook;

libfuzzer_sys::fuzz_target!(|data: &[u8]| webhook::run(model::ForgeKind::Gitea, data));
