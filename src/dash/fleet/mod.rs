//! The watched instances on one dashboard (`capwatch monitor --url A --url B`,
//! `monitoring.targets`, and those discovery lists): one [`DashState`] per instance, each
//! changed by the same pure [`update`], the focus the panes follow, and the instances pane's
//! order (worst first). It routes each event to the instance it is about and says which
//! instance each effect comes from. With discovery it decides who joins and who leaves: a
//! listed URL it does not watch joins; a watched one no longer listed leaves (its state
//! stays, retired, so late events and its end record still find it). No I/O, no clock
//! reads; one instance is a fleet of one.

use std::cmp::Ordering;

use tokio::time::Instant;

use super::effect::{Effect, MetricUpdate};
use super::event::{DiscoveryEvent, Event, Input};
use super::record::{FleetChange, FleetRecord, Record, Stamp};
use super::state::{DashState, Listing, LogLevel, LogLine};
use super::ui::Banner;
use super::update::update;
use crate::alerts::Severity;
use crate::clock::Clock;
use crate::discovery::Discovered;

/// An effect, and the instance it comes from (None: the whole session, e.g. a note or quit).
pub type Tagged = (Option<usize>, Effect);

/// Rides along the event loop beside the fleet: sees each event and what `update` made of
/// it, and may add effects of its own (a drill's conductor, the demo's director) and a
/// banner over the screen. `()` adds nothing.
pub trait Companion {
    fn observe(&mut self, event: &Event, effects: &[Tagged], fleet: &Fleet, clock: Clock) -> Vec<Tagged>;

    /// What the screen's banner says now (None: no banner).
    fn banner(&self) -> Option<Banner> {
        None
    }
}

impl Companion for () {
    fn observe(&mut self, _: &Event, _: &[Tagged], _: &Fleet, _: Clock) -> Vec<Tagged> {
        Vec::new()
    }
}

/// Makes the state of an instance that joins, named by its argument.
pub type NewInstance = Box<dyn Fn(&str) -> DashState + Send>;

/// Discovery's side of the fleet: where instances are listed and how the last lookup went.
pub struct Discovering {
    /// The source, as the config writes it (`dns:replicas:8000`).
    pub source: String,
    /// Why the last lookup failed (None: it worked, or none finished yet).
    pub failing: Option<String>,
    /// Whether a lookup has answered yet.
    pub answered: bool,
    new_instance: NewInstance,
    /// When the session started (the fleet records' uptime).
    started: Instant,
}

/// The watched instances and the one the panes show.
pub struct Fleet {
    instances: Vec<DashState>,
    focus: usize,
    /// Instances that reached their own end (`--cycles`, a service in the wrong shape, or
    /// gone from discovery): the session ends when every one has.
    done: Vec<bool>,
    /// Instances discovery no longer lists.
    left: Vec<bool>,
    /// Each instance's URL (the key discovery's lists are compared on).
    urls: Vec<String>,
    discovering: Option<Discovering>,
}

impl Fleet {
    /// A fleet of `first` and `others` (each with `settings.instance` set when there are several).
    pub fn new(first: DashState, others: Vec<DashState>) -> Self {
        let mut instances = vec![first];
        instances.extend(others);
        Self::of(instances, Vec::new())
    }

    /// A fleet of these instances at these URLs (none: discovery will bring them).
    pub fn of(instances: Vec<DashState>, urls: Vec<String>) -> Self {
        let count = instances.len();
        Self { instances, focus: 0, done: vec![false; count], left: vec![false; count], urls, discovering: None }
    }

    /// Lets discovery (of `source`) add instances made by `new_instance` and retire them.
    pub fn discover(mut self, source: String, new_instance: NewInstance, started: Instant) -> Self {
        self.discovering = Some(Discovering { source, failing: None, answered: false, new_instance, started });
        self
    }

    /// Every instance, retired ones included (their positions never change).
    pub fn instances(&self) -> &[DashState] {
        &self.instances
    }

    /// Positions of the instances still watched.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.instances.len()).filter(|index| !self.left[*index])
    }

    /// Instances discovery stopped listing.
    pub fn left_count(&self) -> usize {
        self.left.iter().filter(|left| **left).count()
    }

    /// Discovery's state, when the fleet follows one.
    pub fn discovering(&self) -> Option<&Discovering> {
        self.discovering.as_ref()
    }

    /// Whether the dashboard shows the instances pane: several instances, or a fleet that
    /// discovery may grow.
    pub fn is_several(&self) -> bool {
        self.instances.len() > 1 || self.discovering.is_some()
    }

    /// The instance the panes show (None while discovery has listed none).
    pub fn focused(&self) -> Option<&DashState> {
        self.instances.get(self.focus).filter(|_| !self.left[self.focus])
    }

    pub fn focus(&self) -> usize {
        self.focus
    }

    /// The first instance (the only one, unless several are watched).
    pub fn first(&self) -> Option<&DashState> {
        self.instances.first()
    }

    /// Applies one event and returns what the event loop must do, each effect with its instance.
    pub fn update(&mut self, event: Event, clock: Clock) -> Vec<Tagged> {
        let count = self.instances.len();
        match event {
            Event::Of { instance, event } if instance < count => self.one(instance, *event, clock),
            Event::Of { .. } => Vec::new(),
            Event::Input(Input::FocusNext) => {
                self.move_focus(1);
                Vec::new()
            }
            Event::Input(Input::FocusPrevious) => {
                self.move_focus(count.saturating_sub(1));
                Vec::new()
            }
            Event::Discovery(found) => self.on_discovery(found, clock),
            Event::Tick
            | Event::Note { .. }
            | Event::Shutdown(_)
            | Event::Ended
            | Event::Input(Input::Quit | Input::TogglePause | Input::TestNow) => self.everyone(&event, clock),
            Event::Input(_) if self.focused().is_some() => self.one(self.focus, event, clock),
            Event::Notification(report) => {
                let to = self.instances.iter().position(|state| state.settings.instance == report.instance);
                self.one(to.unwrap_or(0), Event::Notification(report), clock)
            }
            other => self.one(0, other, clock),
        }
    }

    /// Moves the focus `step` places round, over the instances still watched.
    fn move_focus(&mut self, step: usize) {
        let count = self.instances.len();
        for _ in 0..count {
            self.focus = (self.focus + step) % count;
            if !self.left[self.focus] {
                return;
            }
        }
    }

    /// An event about one instance. Its wish to stop ends the session only once every
    /// instance has had its end.
    fn one(&mut self, index: usize, event: Event, clock: Clock) -> Vec<Tagged> {
        let Some(state) = self.instances.get_mut(index) else { return Vec::new() };
        let mut effects = update(state, event, clock);
        if effects.contains(&Effect::Quit) {
            self.done[index] = true;
            if !self.done.iter().all(|done| *done) {
                effects.retain(|effect| *effect != Effect::Quit);
            }
        }
        effects.into_iter().map(|effect| (Some(index), effect)).collect()
    }

    /// An event for every instance (time, keys that act on all, notes, shutdown): each
    /// state takes it, a log line is written once and quit is the session's.
    fn everyone(&mut self, event: &Event, clock: Clock) -> Vec<Tagged> {
        let mut out = Vec::new();
        let mut quit = false;
        let mut logged = false;
        for (index, state) in self.instances.iter_mut().enumerate() {
            let mut logs = false;
            for effect in update(state, event.clone(), clock) {
                match effect {
                    Effect::Quit => quit = true,
                    Effect::Log { .. } if logged => {}
                    Effect::Log { .. } => {
                        logs = true;
                        out.push((None, effect));
                    }
                    effect => out.push((Some(index), effect)),
                }
            }
            logged |= logs;
        }
        // With nobody listed yet, the session still says what happens and still ends.
        if self.live().next().is_none() {
            match event {
                Event::Note { message } => out.extend(self.say(LogLevel::Info, message.clone(), clock)),
                Event::Shutdown(_) | Event::Input(Input::Quit) => quit = true,
                _ => {}
            }
        }
        if quit {
            out.push((None, Effect::Quit));
        }
        out
    }

    /// A line about the whole fleet: in every watched instance's log pane, written once.
    fn say(&mut self, level: LogLevel, message: String, clock: Clock) -> Vec<Tagged> {
        for index in self.live().collect::<Vec<_>>() {
            let log = &mut self.instances[index].log;
            if log.len() == super::state::LOG_LINES {
                log.pop_front();
            }
            log.push_back(LogLine { wall: clock.wall, level, message: message.clone() });
        }
        vec![(None, Effect::Log { level, message })]
    }

    /// A lookup's answer: who joins, who leaves, and who is confirmed still listed.
    fn on_discovery(&mut self, found: DiscoveryEvent, clock: Clock) -> Vec<Tagged> {
        let Some(discovering) = &mut self.discovering else { return Vec::new() };
        let source = discovering.source.clone();
        match found {
            DiscoveryEvent::Failed { error } => {
                let first = discovering.failing.is_none();
                discovering.failing = Some(error.clone());
                let mut out = Vec::new();
                if first {
                    let watched = self.live().count();
                    let message = format!(
                        "⚠ Discovery ({source}) failed: {error}; still watching the {watched} instance(s) it listed last"
                    );
                    out.extend(self.say(LogLevel::Warn, message, clock));
                }
                // The last list stands: every instance on it counts as listed now.
                for index in self.live().collect::<Vec<_>>() {
                    out.extend(self.one(index, Event::Listed { at: clock.now }, clock));
                }
                out
            }
            DiscoveryEvent::Listed { targets, looked_at } => {
                let mut out = Vec::new();
                discovering.answered = true;
                if discovering.failing.take().is_some() {
                    out.extend(self.say(LogLevel::Info, format!("🛰 Discovery ({source}) answers again"), clock));
                }
                let gone: Vec<usize> = self
                    .live()
                    .filter(|&index| self.instances[index].listing.is_some())
                    .filter(|&index| !targets.iter().any(|target| target.url == self.urls[index]))
                    .collect();
                for index in gone {
                    out.extend(self.leave(index, clock));
                }
                for target in targets {
                    let watched = self.live().find(|&index| self.urls[index] == target.url);
                    match watched {
                        Some(index) => out.extend(self.one(index, Event::Listed { at: looked_at }, clock)),
                        None => out.extend(self.join(target, looked_at, clock)),
                    }
                }
                out
            }
        }
    }

    /// A listed instance joins: its state, probes, record and line.
    fn join(&mut self, target: Discovered, looked_at: Instant, clock: Clock) -> Vec<Tagged> {
        let Some(discovering) = &self.discovering else { return Vec::new() };
        // A name still in use (say, a static target's) gets the address instead.
        let taken =
            |name: &str| self.live().any(|index| self.instances[index].settings.instance.as_deref() == Some(name));
        let name = if taken(&target.name) { crate::discovery::address_of(&target.url) } else { target.name };
        let mut state = (discovering.new_instance)(&name);
        state.settings.instance = Some(name.clone());
        state.listing = Some(Listing::at(looked_at));
        let stamp = self.stamp(&name, clock);
        self.instances.push(state);
        self.done.push(false);
        self.left.push(false);
        self.urls.push(target.url.clone());
        let index = self.instances.len() - 1;
        if self.focused().is_none() {
            self.focus = index;
        }
        let size = self.live().count();
        let mut out = vec![(Some(index), Effect::StartProbes { name: name.clone() })];
        let record = FleetRecord { stamp, change: FleetChange::Joined, url: target.url.clone(), instances: size };
        out.push((Some(index), Effect::Write(Record::Fleet(record))));
        out.push((None, Effect::Metric(MetricUpdate::Instances(size))));
        out.extend(self.say(LogLevel::Info, format!("➕ {name} joined ({}): {size} instance(s)", target.url), clock));
        out.extend(self.one(index, Event::Attach { url: target.url }, clock));
        out
    }

    /// An instance discovery stopped listing leaves: its alerts resolve as `left`, its probes
    /// stop, its gauges go.
    fn leave(&mut self, index: usize, clock: Clock) -> Vec<Tagged> {
        let mut out = self.one(index, Event::Left, clock);
        self.left[index] = true;
        self.done[index] = true;
        let name = self.instances[index].settings.instance.clone().unwrap_or_default();
        let size = self.live().count();
        let stamp = self.stamp(&name, clock);
        out.push((Some(index), Effect::StopProbes));
        out.push((Some(index), Effect::Metric(MetricUpdate::TargetLeft)));
        let record = FleetRecord { stamp, change: FleetChange::Left, url: self.urls[index].clone(), instances: size };
        out.push((Some(index), Effect::Write(Record::Fleet(record))));
        out.push((None, Effect::Metric(MetricUpdate::Instances(size))));
        let message = format!("➖ {name} left ({}): {size} instance(s)", self.urls[index]);
        out.extend(self.say(LogLevel::Info, message, clock));
        if self.focus == index {
            self.move_focus(1);
        }
        out
    }

    fn stamp(&self, name: &str, clock: Clock) -> Stamp {
        let started = self.discovering.as_ref().map_or(clock.now, |d| d.started);
        Stamp {
            ts: clock.timestamp(),
            uptime_s: clock.now.saturating_duration_since(started).as_secs_f64(),
            instance: Some(name.to_owned()),
        }
    }

    /// Positions of the instances still watched, worst first: down before degraded before
    /// starting before healthy, then the louder alert, the higher error rate, the slower P95;
    /// ties in the order they joined.
    pub fn worst_first(&self, now: Instant) -> Vec<usize> {
        let mut order: Vec<(usize, Badness)> =
            self.live().map(|index| (index, Badness::of(&self.instances[index], now))).collect();
        order.sort_by(|(a_index, a), (b_index, b)| b.cmp(a).then(a_index.cmp(b_index)));
        order.into_iter().map(|(index, _)| index).collect()
    }
}

/// How bad an instance looks, for the instances pane's order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Badness {
    status: u8,
    severity: Severity,
    error_rate: f64,
    p95_ms: f64,
}

impl Badness {
    fn of(state: &DashState, now: Instant) -> Self {
        let status = state.status().rank();
        let severity = state.alerts.active().iter().map(|(_, severity)| *severity).max().unwrap_or(Severity::Ok);
        let window = state.window_snapshot(now);
        // An instance with nothing measured sorts as the slowest (the key is never shown).
        let p95_ms = window.latency.map_or(f64::INFINITY, |latency| latency.p95_ms);
        Self { status, severity, error_rate: window.error_rate, p95_ms }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.status
            .cmp(&other.status)
            .then(self.severity.cmp(&other.severity))
            .then(self.error_rate.total_cmp(&other.error_rate))
            .then(self.p95_ms.total_cmp(&other.p95_ms))
    }
}

#[cfg(test)]
mod tests;
