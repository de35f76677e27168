//! Carries out what `update` decided: writes records, prints and logs lines, queues
//! notifications, updates `/metrics`, steers the probe loops and the supervisor, sends faults
//! and the demo's traffic to the server. The only place effects touch the outside world; it
//! decides nothing itself.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::chaos_client::ChaosClient;
use super::console::Console;
use super::effect::Effect;
use super::event::Event;
use super::fleet::Tagged;
use super::metrics::DashMetrics;
use super::probe_loops::{InstanceProbes, ProbeHandles, ProbeStarter};
use super::records_file::RecordsFile;
use super::summary::SummaryFold;
use super::supervisor::SupervisorCommand;
use super::traffic_client::TrafficClient;
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
    /// Each watched instance's probe loops, in fleet order (None once it left the fleet).
    pub probes: Vec<Option<InstanceProbes>>,
    /// Starts the probe loops of an instance that joins the fleet.
    pub starter: ProbeStarter,
    /// Each instance's name: the metrics' `target` label, and (when several are watched) the
    /// prefix of its console lines.
    pub names: Vec<String>,
    /// Whether console lines name their instance (several are, or may be, watched).
    pub name_lines: bool,
    /// Asks discovery to look again now (None without discovery).
    pub rediscover: Option<Arc<tokio::sync::Notify>>,
    /// None once notifications are draining at exit.
    pub notifier: Option<Notifier<Event>>,
    /// None when capwatch did not start the server, or once it is being stopped.
    pub supervisor_tx: Option<mpsc::Sender<SupervisorCommand>>,
    /// Talks to the server's `/chaos` routes; answers come back on `events_tx`.
    pub chaos: ChaosClient,
    /// Sends the session's own scenes and freezes drift references; answers come back likewise.
    pub traffic: TrafficClient,
    pub events_tx: mpsc::Sender<Event>,
}

impl Executor {
    /// Carries out `effects`, decided at `clock`, in order.
    pub fn execute(&mut self, effects: Vec<Tagged>, clock: &Clock) -> Flow {
        let mut flow = Flow::Continue;
        for (instance, effect) in effects {
            let index = instance.unwrap_or(0);
            let name = self.names.get(index).map_or("local", String::as_str);
            match effect {
                Effect::Write(record) => {
                    self.summary.add(&record);
                    if let Err(err) = self.records.write(&record) {
                        tracing::error!(error = %err, path = %self.records.path().display(), "cannot write metrics");
                    }
                }
                Effect::Log { level, message } if self.name_lines && instance.is_some() => {
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
                Effect::SetProbeTarget(url) => self.handles(index).into_iter().for_each(|p| p.set_target(url.clone())),
                Effect::SetPaused(paused) => self.handles(index).into_iter().for_each(|p| p.set_paused(paused)),
                Effect::SetVariants(variants) => {
                    self.handles(index).into_iter().for_each(|p| p.set_variants(variants.clone()));
                }
                Effect::TestNow => self.handles(index).into_iter().for_each(ProbeHandles::test_now),
                Effect::StartProbes { name } => {
                    if self.probes.len() <= index {
                        self.probes.resize_with(index + 1, || None);
                        self.names.resize(index + 1, String::new());
                    }
                    self.probes[index] = Some(self.starter.start(index));
                    self.metrics.add_target(&name);
                    self.names[index] = name;
                }
                // Dropping an instance's loops stops them.
                Effect::StopProbes => drop(self.probes.get_mut(index).and_then(Option::take)),
                Effect::Rediscover => {
                    if let Some(rediscover) = &self.rediscover {
                        rediscover.notify_one();
                    }
                }
                Effect::InjectFault { url, spec } => {
                    tokio::spawn(self.chaos.clone().inject_and_report(url, spec, self.events_tx.clone()));
                }
                Effect::ClearFaults { url } => {
                    tokio::spawn(self.chaos.clone().clear_and_report(url, self.events_tx.clone()));
                }
                Effect::SendTraffic { url, shift, requests, seed } => {
                    let events_tx = self.events_tx.clone();
                    tokio::spawn(self.traffic.clone().send_and_report(url, shift, requests, seed, events_tx));
                }
                Effect::FreezeDriftReference { url } => {
                    tokio::spawn(self.traffic.clone().freeze_and_report(url, self.events_tx.clone()));
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

    /// The probe controls of the instance at `index`, while it is probed.
    fn handles(&self, index: usize) -> Option<&ProbeHandles> {
        self.probes.get(index).and_then(Option::as_ref).map(|probes| &probes.handles)
    }
}
