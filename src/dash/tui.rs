//! The only code that touches the terminal: raw mode and the alternate screen
//! ([`TerminalGuard`], restored when dropped and, through `ratatui::init`'s panic hook, on a
//! panic), drawing frames of the pure view, and turning terminal input into [`Event`]s.

use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use super::event::{Event, ShutdownReason, key_to_input};
use super::fleet::Fleet;
use super::ui::Banner;
use crate::clock::Clock;

/// Full-screen terminal for as long as it lives.
pub struct TerminalGuard {
    terminal: DefaultTerminal,
}

impl TerminalGuard {
    pub fn enter() -> Self {
        Self { terminal: ratatui::init() }
    }

    /// Draws one frame of the view (with the demo's banner, while one plays).
    pub fn draw(&mut self, fleet: &Fleet, banner: Option<&Banner>, clock: Clock) {
        if let Err(err) = self.terminal.draw(|frame| super::ui::draw(frame, fleet, banner, clock)) {
            tracing::error!(error = %err, "cannot draw the dashboard");
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Sends key presses as [`Event::Input`], resizes as [`Event::Tick`] (a redraw), and a
/// shutdown when the terminal goes away. Ends when the event loop stops listening.
pub async fn forward_input(events_tx: mpsc::Sender<Event>) {
    use futures::StreamExt;
    let mut input = crossterm::event::EventStream::new();
    loop {
        let event = match input.next().await {
            Some(Ok(crossterm::event::Event::Key(key))) => match key_to_input(key) {
                Some(input) => Event::Input(input),
                None => continue,
            },
            Some(Ok(crossterm::event::Event::Resize(..))) => Event::Tick,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => Event::Shutdown(ShutdownReason::TerminalClosed),
        };
        let closed = matches!(event, Event::Shutdown(_));
        if events_tx.send(event).await.is_err() || closed {
            return;
        }
    }
}
