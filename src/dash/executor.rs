//! Carries out what `update` decided: writes records, prints and logs lines, queues
//! notifications, updates `/metrics`, steers the probe loops and the supervisor. The only
//! place effects touch the outside world; it decides nothing itself.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::chaos_client::ChaosClient;
use super::console::Console;
use super::effect::Effect;
use super::event::Event;
use super::fleet::Tagged;
use super::metrics::DashMetrics;
use super::probe_loops::ProbeHandles;
use super::records_file::RecordsFile;
use super::summary::SummaryFold;
use super::supervisor::SupervisorCommand;
use crate::clock::Clock;
use crate::notify::Notifier;

/// Whether the event loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Everything effects act on.
pub struct Executor {
    pub records: RecordsFile,
    /// The session summary so far: every record written is folded in.
    pub summary: SummaryFold,
    pub metrics: Arc<DashMetrics>,
    pub console: Console,
    /// Each watched instance's probe loops, in fleet order.
    pub probes: Vec<ProbeHandles>,
    /// Each instance's name: the metrics' `target` label, and (when several are watched) the
    /// prefix of its console lines.
    pub names: Vec<String>,
    /// None once notifications are draining at exit.
    pub notifier: Option<Notifier<Event>>,
    /// None when capwatch did not start the server, or once it is being stopped.
    pub supervisor_tx: Option<mpsc::Sender<SupervisorCommand>>,
    /// Talks to the server's `/chaos` routes; answers come back on `events_tx`.
    pub chaos: ChaosClient,
    pub events_tx: mpsc::Sender<Event>,
}

impl Executor {
    /// Carries out `effects`, decided at `clock`, in order.
    pub fn execute(&mut self, effects: Vec<Tagged>, clock: &Clock) -> Flow {
        let mut flow = Flow::Continue;
        let several = self.names.len() > 1;
        for (instance, effect) in effects {
            let index = instance.unwrap_or(0);
            let name = self.names.get(index).map_or("local", String::as_str);
            let Some(probes) = self.probes.get(index) else { continue };
            match effect {
                Effect::Write(record) => {
                    self.summary.add(&record);
                    if let Err(err) = self.records.write(&record) {
                        tracing::error!(error = %err, path = %self.records.path().display(), "cannot write metrics");
                    }
                }
                Effect::Log { level, message } if several && instance.is_some() => {
                    self.console.line(level, &format!("[{name}] {message}"), clock);
                }
                Effect::Log { level, message } => self.console.line(level, &message, clock),
                Effect::ChildLog { line } => self.console.child(&line),
                Effect::Notify(alert) => {
                    if let Some(notifier) = &mut self.notifier {
                        notifier.notify(&alert, clock);
                    }
                }
                Effect::Metric(update) => self.metrics.apply(name, &update),
                Effect::SetProbeTarget(url) => probes.set_target(url),
                Effect::SetPaused(paused) => probes.set_paused(paused),
                Effect::SetVariants(variants) => probes.set_variants(variants),
                Effect::TestNow => probes.test_now(),
                Effect::InjectFault { url, spec } => {
                    tokio::spawn(self.chaos.clone().inject_and_report(url, spec, self.events_tx.clone()));
                }
                Effect::ClearFaults { url } => {
                    tokio::spawn(self.chaos.clone().clear_and_report(url, self.events_tx.clone()));
                }
                Effect::RestartServer { reason } => {
                    if let Some(supervisor_tx) = &self.supervisor_tx {
                        // A full or closed command channel means a restart or stop is already under way.
                        let _ = supervisor_tx.try_send(SupervisorCommand::Restart { reason });
                    }
                }
                Effect::Quit => flow = Flow::Quit,
            }
        }
        flow
    }
}
