//! What `update` decides and the executor carries out: records to write, log lines,
//! notifications, metric updates, and orders to the probe loops, the supervisor and the
//! event loop. Plain data; nothing here does I/O.

use std::time::Duration;

use super::record::Record;
use super::state::LogLevel;
use crate::alerts::{AlertEvent, RuleKind, Severity};

/// One decision of `update`.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append one record to the metrics file.
    Write(Record),
    /// A line for the monitor log and the headless console (the log pane has it already).
    Log { level: LogLevel, message: String },
    /// One line the child server wrote, for the monitor's log file.
    ChildLog { line: String },
    /// Send an alert transition to the notification sinks.
    Notify(AlertEvent),
    /// Update the dashboard's `/metrics`.
    Metric(MetricUpdate),
    /// Probe this URL from now on (None: nothing to probe yet).
    SetProbeTarget(Option<String>),
    /// Pause or resume probing.
    SetPaused(bool),
    /// Test each of these model variants by name (two or more: the A/B comparison).
    SetVariants(Vec<String>),
    /// Run a test cycle now.
    TestNow,
    /// Start a fault on the chaos-enabled server at `url` (`POST /chaos`).
    InjectFault { url: String, spec: crate::protocol::faults::FaultSpec },
    /// End every fault on the server at `url` (`DELETE /chaos`).
    ClearFaults { url: String },
    /// Send `requests` scenes (`shift`: the kind of picture; `seed`: which ones) to the server
    /// at `url`, as real caption requests (the demo's traffic; its drift window fills).
    SendTraffic { url: String, shift: crate::drift::scenes::Shift, requests: usize, seed: u64 },
    /// Freeze the drift reference of the server at `url` (`POST /drift/baseline`).
    FreezeDriftReference { url: String },
    /// Start probing a new instance of the fleet (it joined), named `name`.
    StartProbes { name: String },
    /// Stop probing this instance (it left the fleet).
    StopProbes,
    /// Ask discovery to look again now (a listed instance started failing: is it still listed?).
    Rediscover,
    /// Ask the supervisor to restart the server.
    RestartServer { reason: String },
    /// Stop monitoring (then stop the server, write the summary).
    Quit,
}

/// Which probe a measurement belongs to (the `probe` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Caption,
    Health,
}

/// A change to the dashboard's Prometheus metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricUpdate {
    /// A probe and how it ended (`success` or a failure kind).
    Probe { probe: ProbeKind, outcome: &'static str, latency: Duration },
    /// The quality score of a successful inference test.
    CaptionQuality(f64),
    /// An alert transition.
    Alert(AlertEvent),
    /// The supervised server was started again.
    ServerRestart,
    /// A test cycle completed.
    TestCycle,
    /// A notification's outcome at one sink (`delivered`, `failed`, `dropped`).
    Notification { sink: String, outcome: &'static str },
    /// The current values of every gauge.
    Gauges(Gauges),
    /// A probe of one model variant by name (A/B), besides its `Probe` update.
    VariantProbe { model: String, outcome: &'static str, latency: Duration, quality: Option<f64> },
    /// One variant against the baseline, as of the end of a test cycle.
    Ab(Box<crate::stats::comparison::Figures>),
    /// The number of instances watched now (the fleet grew or shrank).
    Instances(usize),
    /// The instance left the fleet: its gauges go away.
    TargetLeft,
}

/// Gauge values after an update.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauges {
    pub consecutive_failures: u64,
    pub consecutive_health_failures: u64,
    pub service_healthy: bool,
    pub server_up: bool,
    pub crash_loop: bool,
    /// Every rule's severity, in `RuleKind::ALL` order.
    pub alert_severity: Vec<(RuleKind, Severity)>,
}
