//! The notification spool: a JSON Lines file that makes notifications survive the
//! dashboard. Each one is appended (and fsynced) before its first attempt, each outcome
//! after it; at start, what was never delivered is sent again (at least once, with the same
//! id). Bounded (at most `max_pending` undelivered, none older than `max_age`) and
//! compacted (rewritten with only the undelivered ones at start and whenever it has grown).
//! No HTTP here: the [`Notifier`](super::Notifier) decides what to send.
//!
//! Lines, one JSON object each (`op` says which):
//! `{"op":"queued","sink":…,"queued_ms":…,"notification":{…}}`,
//! `{"op":"outcome","id":…,"sink":…,"result":{"outcome":"delivered",…}}`,
//! `{"op":"discarded","id":…,"sink":…,"reason":"expired"}`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::delivery::DeliveryOutcome;
use super::message::Notification;
use super::sink::FailureKind;

/// How much the spool keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpoolLimits {
    pub max_pending: usize,
    pub max_age: Duration,
}

/// A notification waiting for delivery at one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub sink: String,
    /// When it was first queued, Unix milliseconds.
    pub queued_ms: u64,
    pub notification: Notification,
}

/// Why an undelivered notification will not be sent (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// Older than `max_age`.
    Expired,
    /// A later notification about the same rule and instance went to the same sink.
    Superseded,
    /// More than `max_pending` were waiting; the oldest went.
    Evicted,
    /// The sink is no longer in the config.
    SinkRemoved,
}

impl Discard {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Expired => "older than alerts.delivery.spool_max_age_s",
            Self::Superseded => "a later notification about the same alert replaced it",
            Self::Evicted => "more than alerts.delivery.spool_max_pending were waiting",
            Self::SinkRemoved => "its sink is no longer configured",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
// One line at a time passes through here; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Line {
    Queued(Pending),
    Outcome { id: String, sink: String, result: DeliveryOutcome },
    Discarded { id: String, sink: String, reason: Discard },
}

/// Whether an outcome ends a notification's life in the spool: delivered, or refused by
/// the receiver (a 4xx other than 408 and 429 — it would refuse it again).
fn settles(outcome: &DeliveryOutcome) -> bool {
    match outcome {
        DeliveryOutcome::Delivered { .. } => true,
        DeliveryOutcome::Failed { failure: FailureKind::Http(status), .. } => {
            (400..500).contains(status) && *status != 408 && *status != 429
        }
        DeliveryOutcome::Failed { .. } | DeliveryOutcome::Dropped { .. } => false,
    }
}

/// What [`Spool::open`] found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// To send again, oldest first.
    pub pending: Vec<Pending>,
    /// Undelivered notifications that will not be sent, and why.
    pub discarded: Vec<(Pending, Discard)>,
    /// Lines that could not be read (a torn last line after a crash, a hand edit).
    pub unreadable_lines: usize,
}

/// The open spool file and the notifications it holds undelivered.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    /// Lines in the file now.
    lines: usize,
    pending: Vec<Pending>,
    limits: SpoolLimits,
}

impl Spool {
    /// Opens (or creates) the spool at `path`, reads what was left undelivered, applies the
    /// limits at `now_ms` and rewrites the file with only what will be sent again.
    pub fn open(path: &Path, limits: SpoolLimits, now_ms: u64) -> io::Result<(Self, Recovered)> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut recovered = Recovered::default();
        let mut pending: Vec<Pending> = Vec::new();
        // The newest queued_ms per (sink, rule, instance), delivered or not.
        let mut latest: HashMap<(String, String, Option<String>), u64> = HashMap::new();
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Line>(&line) {
                        Ok(Line::Queued(entry)) => {
                            let key = alert_key(&entry);
                            let newest = latest.entry(key).or_insert(entry.queued_ms);
                            *newest = (*newest).max(entry.queued_ms);
                            pending.push(entry);
                        }
                        Ok(Line::Outcome { id, sink, result }) => {
                            if settles(&result) {
                                forget(&mut pending, &id, &sink);
                            }
                        }
                        Ok(Line::Discarded { id, sink, .. }) => {
                            forget(&mut pending, &id, &sink);
                        }
                        Err(_) => recovered.unreadable_lines += 1,
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let max_age_ms = u64::try_from(limits.max_age.as_millis()).unwrap_or(u64::MAX);
        let mut kept = Vec::with_capacity(pending.len());
        for entry in pending {
            let reason = if now_ms.saturating_sub(entry.queued_ms) > max_age_ms {
                Some(Discard::Expired)
            } else if latest.get(&alert_key(&entry)).is_some_and(|newest| *newest > entry.queued_ms) {
                Some(Discard::Superseded)
            } else {
                None
            };
            match reason {
                Some(reason) => recovered.discarded.push((entry, reason)),
                None => kept.push(entry),
            }
        }
        let surplus = kept.len().saturating_sub(limits.max_pending);
        recovered.discarded.extend(kept.drain(..surplus).map(|entry| (entry, Discard::Evicted)));
        rewrite(path, &kept)?;
        let file = OpenOptions::new().append(true).open(path)?;
        recovered.pending.clone_from(&kept);
        let spool = Self { path: path.to_owned(), file, lines: kept.len(), pending: kept, limits };
        Ok((spool, recovered))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Undelivered notifications, oldest first.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// Writes `notification` for `sink` to disk (fsync) before its first attempt. Returns
    /// the oldest undelivered one when that had to make room.
    pub fn queue(&mut self, sink: &str, notification: &Notification, now_ms: u64) -> io::Result<Option<Pending>> {
        let entry = Pending { sink: sink.to_owned(), queued_ms: now_ms, notification: notification.clone() };
        self.append(&Line::Queued(entry.clone()))?;
        self.pending.push(entry);
        if self.pending.len() <= self.limits.max_pending {
            return Ok(None);
        }
        let oldest = self.pending.remove(0);
        self.discard(&oldest, Discard::Evicted)?;
        Ok(Some(oldest))
    }

    /// Records what became of a notification at `sink`.
    pub fn record(&mut self, id: &str, sink: &str, outcome: &DeliveryOutcome) -> io::Result<()> {
        self.append(&Line::Outcome { id: id.to_owned(), sink: sink.to_owned(), result: outcome.clone() })?;
        if settles(outcome) {
            forget(&mut self.pending, id, sink);
        }
        self.compact_if_grown()
    }

    /// Gives up on an undelivered notification.
    pub fn discard(&mut self, entry: &Pending, reason: Discard) -> io::Result<()> {
        let (id, sink) = (entry.notification.id.clone(), entry.sink.clone());
        forget(&mut self.pending, &id, &sink);
        self.append(&Line::Discarded { id, sink, reason })
    }

    fn append(&mut self, line: &Line) -> io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(io::Error::other)?;
        text.push('\n');
        // One write per line, so a crash leaves at most one torn line (skipped when read).
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.lines += 1;
        Ok(())
    }

    /// Rewrites the file with only the undelivered notifications once most of its lines
    /// are history.
    fn compact_if_grown(&mut self) -> io::Result<()> {
        if self.lines < (2 * self.pending.len()).max(256) {
            return Ok(());
        }
        rewrite(&self.path, &self.pending)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = self.pending.len();
        Ok(())
    }
}

/// Drops the notification `id` for `sink` from `pending`.
fn forget(pending: &mut Vec<Pending>, id: &str, sink: &str) {
    pending.retain(|entry| !(entry.notification.id == id && entry.sink == sink));
}

fn alert_key(entry: &Pending) -> (String, String, Option<String>) {
    (entry.sink.clone(), entry.notification.rule.clone(), entry.notification.instance.clone())
}

/// Replaces the file at `path` with `entries` as `queued` lines: written beside it, synced,
/// renamed over it, so a crash leaves either the old file or the new one.
fn rewrite(path: &Path, entries: &[Pending]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary)?;
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(&Line::Queued(entry.clone())).map_err(io::Error::other)?);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        // The rename is durable once the directory is synced; not every platform allows it.
        if let Ok(dir) = File::open(dir) {
            let _synced = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};

    const LIMITS: SpoolLimits = SpoolLimits { max_pending: 3, max_age: Duration::from_secs(3600) };

    fn notification(rule: RuleKind, transition: AlertTransition) -> Notification {
        let alert =
            AlertEvent { rule, severity: Severity::Warning, transition, value: 1.0, threshold: 0.5, instance: None };
        Notification::from_alert(&alert, "svc", "default", "2026-12-06T00:00:00.000Z".to_owned())
    }

    fn spool_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("capwatch-spool-{name}-{}", std::process::id()));
        let _fresh = std::fs::remove_dir_all(&dir);
        dir.join("spool.jsonl")
    }

    fn delivered() -> DeliveryOutcome {
        DeliveryOutcome::Delivered { attempts: 1, status: 200, elapsed: Duration::from_millis(5) }
    }

    fn refused() -> DeliveryOutcome {
        DeliveryOutcome::Failed { attempts: 3, error: "connection refused".to_owned(), failure: FailureKind::Refused }
    }

    #[test]
    fn what_was_not_delivered_is_recovered_and_the_file_compacted() {
        let path = spool_path("recover");
        let (mut spool, recovered) = Spool::open(&path, LIMITS, 1_000).unwrap();
        assert!(recovered.pending.is_empty());
        let down = notification(RuleKind::HealthDown, AlertTransition::Fired);
        let slow = notification(RuleKind::P95Latency, AlertTransition::Fired);
        spool.queue("hook", &down, 1_000).unwrap();
        spool.queue("slack", &down, 1_000).unwrap();
        spool.queue("hook", &slow, 1_001).unwrap();
        spool.record(&down.id, "hook", &delivered()).unwrap();
        spool.record(&slow.id, "hook", &refused()).unwrap();
        // A torn last line, as a kill in the middle of a write would leave.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"op\":\"outc").unwrap();
        drop((spool, file));

        let (spool, recovered) = Spool::open(&path, LIMITS, 2_000).unwrap();
        let left: Vec<(&str, &str)> =
            recovered.pending.iter().map(|p| (p.sink.as_str(), p.notification.rule.as_str())).collect();
        assert_eq!(left, [("slack", "health_down"), ("hook", "p95_latency")]);
        assert_eq!(recovered.pending[0].notification, down, "the notification comes back whole, id included");
        assert_eq!(recovered.unreadable_lines, 1);
        assert_eq!(spool.pending().len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2, "compacted to what is pending");
        let _cleanup = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn a_refusing_receiver_settles_a_notification_and_a_later_one_supersedes_it() {
        let path = spool_path("settle");
        let (mut spool, _) = Spool::open(&path, LIMITS, 0).unwrap();
        let fired = notification(RuleKind::ErrorRate, AlertTransition::Fired);
        let resolved = notification(RuleKind::ErrorRate, AlertTransition::Resolved);
        let other = notification(RuleKind::HealthDown, AlertTransition::Fired);
        spool.queue("hook", &fired, 10).unwrap();
        spool.queue("hook", &resolved, 20).unwrap();
        spool.queue("slack", &other, 30).unwrap();
        let rejected =
            DeliveryOutcome::Failed { attempts: 1, error: "HTTP 404".to_owned(), failure: FailureKind::Http(404) };
        spool.record(&other.id, "slack", &rejected).unwrap();
        assert_eq!(spool.pending().len(), 2);
        drop(spool);
        let (_, recovered) = Spool::open(&path, LIMITS, 40).unwrap();
        assert_eq!(recovered.pending.len(), 1);
        assert_eq!(recovered.pending[0].notification.id, resolved.id);
        assert_eq!(recovered.discarded.len(), 1);
        assert_eq!(
            (recovered.discarded[0].0.notification.id.as_str(), recovered.discarded[0].1),
            (fired.id.as_str(), Discard::Superseded)
        );
        let _cleanup = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn the_spool_is_bounded_by_count_and_age() {
        let path = spool_path("bounded");
        let (mut spool, _) = Spool::open(&path, LIMITS, 0).unwrap();
        let rules = [RuleKind::HealthDown, RuleKind::ErrorRate, RuleKind::P95Latency, RuleKind::QualityScore];
        let sent: Vec<Notification> = rules.iter().map(|rule| notification(*rule, AlertTransition::Fired)).collect();
        for (at, n) in sent.iter().enumerate() {
            let evicted = spool.queue("hook", n, at as u64 * 1_000_000).unwrap();
            assert_eq!(evicted.is_some(), at == 3, "the fourth makes room by evicting the first");
        }
        assert_eq!(
            spool.pending().iter().map(|p| &p.notification.id).collect::<Vec<_>>(),
            [&sent[1].id, &sent[2].id, &sent[3].id]
        );
        drop(spool);
        // An hour after the second was queued, it has expired; the others are still due.
        let (_, recovered) = Spool::open(&path, LIMITS, 1_000_000 + 3_600_001).unwrap();
        assert_eq!(
            recovered.pending.iter().map(|p| &p.notification.id).collect::<Vec<_>>(),
            [&sent[2].id, &sent[3].id]
        );
        assert_eq!(recovered.discarded.iter().map(|(_, why)| *why).collect::<Vec<_>>(), [Discard::Expired]);
        let _cleanup = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn history_is_compacted_away_while_running() {
        let path = spool_path("compact");
        let (mut spool, _) = Spool::open(&path, LIMITS, 0).unwrap();
        for at in 0..400 {
            let n = notification(RuleKind::HealthDown, AlertTransition::Fired);
            spool.queue("hook", &n, at).unwrap();
            spool.record(&n.id, "hook", &delivered()).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 256, "{lines} lines: history was compacted");
        let _cleanup = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
