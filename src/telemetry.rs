//! Logging set-up: `tracing` to stderr, human-readable or JSON lines.
//!
//! `RUST_LOG` overrides the default filter (`info`). Only `main` calls this, once.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber (`info` unless `RUST_LOG` says otherwise). Calling it
/// twice is harmless (the second is ignored).
pub fn init(format: LogFormat) {
    init_with_default(format, "info,ort=warn");
}

/// Like [`init`] with another default filter (headless mode prints its own lines on stdout
/// and keeps stderr for warnings).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // try_init fails only when a subscriber is already installed (tests); keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
