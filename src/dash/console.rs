//! Where the monitor's lines go besides the screen: coloured lines on stdout when headless
//! (never while the terminal UI is up), and always the monitor's log file (`tracing`).

use crate::clock::Clock;

use super::state::LogLevel;

/// How the monitor shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Coloured lines on stdout.
    Headless,
    /// The full-screen dashboard.
    Tui,
}

/// Writes monitor and child-server lines.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    pub mode: Mode,
}

impl Console {
    /// A monitor line, stamped with the clock reading of the update that made it.
    pub fn line(&self, level: LogLevel, message: &str, clock: &Clock) {
        if self.mode == Mode::Headless {
            println!("{}", format_line(level, message, clock));
        }
        match level {
            LogLevel::Info => tracing::info!(target: "capwatch::monitor", "{message}"),
            LogLevel::Warn => tracing::warn!(target: "capwatch::monitor", "{message}"),
            LogLevel::Error => tracing::error!(target: "capwatch::monitor", "{message}"),
        }
    }

    /// One of the child server's own (JSON) log lines, kept in the monitor's log file.
    pub fn child(&self, line: &str) {
        tracing::info!(target: "capwatch::child", child = %line, "server log");
    }
}

/// `2026-11-26T14:00:00Z message`, yellow for warnings and red for errors.
fn format_line(level: LogLevel, message: &str, clock: &Clock) -> String {
    const RESET: &str = "\x1b[0m";
    let time = clock.timestamp_seconds();
    match level {
        LogLevel::Info => format!("{time} {message}"),
        LogLevel::Warn => format!("{time} \x1b[33m{message}{RESET}"),
        LogLevel::Error => format!("{time} \x1b[31m{message}{RESET}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lines_carry_the_update_time_and_colour_by_level() {
        let clock = Clock::at(tokio::time::Instant::now(), 1_795_701_600);
        assert_eq!(format_line(LogLevel::Info, "ok", &clock), "2026-11-26T14:00:00Z ok");
        assert_eq!(format_line(LogLevel::Error, "bad", &clock), "2026-11-26T14:00:00Z \x1b[31mbad\x1b[0m");
    }
}
