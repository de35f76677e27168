//! The only code that touches the terminal's raw mode and alternate screen.
//!
//! [`TerminalGuard`] enters full-screen mode and restores the terminal when dropped;
//! `ratatui::init` also installs a panic hook that restores it before the panic message.

use ratatui::DefaultTerminal;

/// Full-screen terminal for as long as it lives.
pub struct TerminalGuard {
    pub terminal: DefaultTerminal,
}

impl TerminalGuard {
    pub fn enter() -> Self {
        Self { terminal: ratatui::init() }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}
