//! Logging set-up: `tracing` to stderr, human-readable or JSON lines; for the monitor also
//! to `logs/service_monitoring.log` (JSON lines, rotated daily, 7 files kept).
//!
//! `RUST_LOG` overrides the default stderr filter. Only `main` calls this, once.

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

/// The monitor's logging: JSON lines at `info` into `dir/file_name.<date>` (rotated daily,
/// written synchronously so a killed monitor loses nothing), and warnings on stderr (the
/// monitor's own console lines go to stdout, so they are not repeated there).
pub fn init_monitor(dir: &std::path::Path, file_name: &str, tui: bool) -> Result<(), String> {
    use tracing_appender::rolling::{RollingFileAppender, Rotation};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};

    // The appender lists the directory to prune old files; make sure it is there.
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the log directory {}: {e}", dir.display()))?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(file_name)
        .max_log_files(7)
        .build(dir)
        .map_err(|e| format!("cannot open the log file in {}: {e}", dir.display()))?;
    let file_layer =
        fmt::layer().json().flatten_event(true).with_writer(appender).with_filter(EnvFilter::new("info,ort=warn"));
    let stderr_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("warn,capwatch::monitor=off,capwatch::child=off"));
    let stderr_layer =
        fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).with_filter(stderr_filter);
    if tui {
        // Full screen: nothing may write to stderr; the log pane shows the dashboard's lines.
        // try_init fails only when a subscriber is already installed; keep that one.
        let _ = tracing_subscriber::registry().with(file_layer).try_init();
    } else {
        // Same as above.
        let _ = tracing_subscriber::registry().with(file_layer).with(stderr_layer).try_init();
    }
    Ok(())
}
