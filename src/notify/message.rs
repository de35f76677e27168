//! What a notification says: the documented JSON payload of the generic webhook, and the
//! Slack and Telegram bodies built from it. Pure formatting; no I/O, no secrets.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::alerts::{AlertEvent, AlertTransition, Severity};

/// Payload format version of the generic webhook (bumped on incompatible changes).
pub const PAYLOAD_VERSION: u32 = 1;

/// Whether an alert is firing, has cleared, or this is a test from `capwatch alert-test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
    Test,
}

/// Why the notification was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The rule left OK.
    Fired,
    /// WARNING → CRITICAL.
    Escalated,
    /// CRITICAL → WARNING (to a critical-only sink: a resolve).
    Deescalated,
    /// Still bad after the cooldown.
    Repeated,
    /// Back to OK.
    Resolved,
    /// Back to OK because the instance left the fleet (a planned scale-down).
    Left,
    /// `capwatch alert-test`.
    Test,
}

/// One notification: the generic webhook's JSON body, field for field (see the README).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub version: u32,
    /// Unique per notification (a UUIDv7, so ids sort by time); the same when it is sent
    /// again, so a receiver can drop a repeat.
    pub id: String,
    pub source: String,
    /// `alerts.service_name` from the config.
    pub service: String,
    /// The model directory's name.
    pub model: String,
    /// The watched instance the alert is about, when the dashboard watches several (left out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `p95_latency`, `error_rate`, `consecutive_failures`, `quality_score`, `health_down`,
    /// `crash_loop`, or `alert_test`.
    pub rule: String,
    /// `warning` or `critical`; `ok` on a resolved notification.
    pub severity: Severity,
    pub state: AlertState,
    pub reason: Reason,
    pub resolved: bool,
    /// The observed value in the rule's unit (ms, ratio 0..1, count, score 0..1); null when
    /// nothing was measured (an alert resolved because its instance left the fleet).
    pub value: Option<f64>,
    /// The threshold crossed (for a resolved alert: the one it had crossed).
    pub threshold: f64,
    /// The value and threshold as people read them (`4200.5ms`, `30.0%`).
    pub value_text: String,
    pub threshold_text: String,
    /// The same line the dashboard logs.
    pub message: String,
    /// RFC 3339 with milliseconds, UTC.
    pub timestamp: String,
    /// Sent by `capwatch drill`: a rehearsal, not an incident (the field is left out otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
    /// Sent again from the spool after the dashboard restarted: it may have arrived before
    /// (the field is left out otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resent: bool,
}

/// A fresh notification id: a UUIDv7 (time-ordered, random in its low bits).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

impl Notification {
    /// The notification for an alert transition.
    pub fn from_alert(alert: &AlertEvent, service: &str, model: &str, timestamp: String) -> Self {
        let (state, reason) = match alert.transition {
            AlertTransition::Fired => (AlertState::Firing, Reason::Fired),
            AlertTransition::Escalated => (AlertState::Firing, Reason::Escalated),
            AlertTransition::Deescalated => (AlertState::Firing, Reason::Deescalated),
            AlertTransition::Repeated => (AlertState::Firing, Reason::Repeated),
            AlertTransition::Resolved => (AlertState::Resolved, Reason::Resolved),
            AlertTransition::Left => (AlertState::Resolved, Reason::Left),
        };
        Self {
            version: PAYLOAD_VERSION,
            id: new_id(),
            source: "capwatch".to_owned(),
            service: service.to_owned(),
            model: model.to_owned(),
            instance: alert.instance.clone(),
            rule: alert.rule.name().to_owned(),
            severity: alert.severity,
            state,
            reason,
            resolved: state == AlertState::Resolved,
            value: alert.value.is_finite().then_some(alert.value),
            threshold: alert.threshold,
            value_text: if alert.value.is_finite() { alert.rule.format_value(alert.value) } else { "—".to_owned() },
            threshold_text: alert.rule.format_value(alert.threshold),
            message: match &alert.instance {
                Some(instance) => format!("[{instance}] {alert}"),
                None => alert.to_string(),
            },
            timestamp,
            drill: false,
            resent: false,
        }
    }

    /// The same notification marked as a drill.
    pub fn as_drill(mut self) -> Self {
        self.drill = true;
        self.message = format!("[DRILL] {}", self.message);
        self
    }

    /// The same notification, marked as sent again from the spool.
    pub fn as_resent(mut self) -> Self {
        self.resent = true;
        self
    }

    /// The same notification as a resolve (a de-escalation, to a sink that only hears CRITICAL).
    pub fn as_resolved(mut self) -> Self {
        self.state = AlertState::Resolved;
        self.resolved = true;
        self
    }

    /// The notification `capwatch alert-test` sends.
    pub fn test(service: &str, model: &str, timestamp: String) -> Self {
        Self {
            version: PAYLOAD_VERSION,
            id: new_id(),
            source: "capwatch".to_owned(),
            service: service.to_owned(),
            model: model.to_owned(),
            instance: None,
            rule: "alert_test".to_owned(),
            severity: Severity::Warning,
            state: AlertState::Test,
            reason: Reason::Test,
            resolved: false,
            value: None,
            threshold: 0.0,
            value_text: String::new(),
            threshold_text: String::new(),
            message: "🧪 capwatch test notification: alert delivery works".to_owned(),
            timestamp,
            drill: false,
            resent: false,
        }
    }

    /// The generic webhook body.
    pub fn webhook_body(&self) -> Value {
        // Serialising plain fields cannot fail; Null would still be a valid (if useless) body.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Headline and detail lines shared by the chat formats.
    fn lines(&self) -> (String, String) {
        let service = match &self.instance {
            Some(instance) => format!("{} · {instance}", self.service),
            None => self.service.clone(),
        };
        let headline = match (self.state, self.reason, self.severity) {
            (AlertState::Test, ..) => format!("🧪 TEST · {service}"),
            (AlertState::Resolved, ..) => format!("✅ RESOLVED · {service}"),
            (_, Reason::Repeated, severity) => format!("🔁 STILL {severity} · {service}"),
            (_, _, Severity::Critical) => format!("🚨🚨 CRITICAL · {service}"),
            (_, _, severity) => format!("🚨 {severity} · {service}"),
        };
        let headline = if self.drill { format!("🧯 DRILL · {headline}") } else { headline };
        let detail = match self.state {
            AlertState::Test => "capwatch alert delivery works (sent by `capwatch alert-test`)".to_owned(),
            AlertState::Resolved if self.reason == Reason::Left => {
                format!("{} (the instance left the fleet; threshold {})", self.rule, self.threshold_text)
            }
            AlertState::Resolved => {
                format!("{} = {} (back to normal; threshold {})", self.rule, self.value_text, self.threshold_text)
            }
            AlertState::Firing => format!("{} = {} (threshold {})", self.rule, self.value_text, self.threshold_text),
        };
        (headline, detail)
    }

    /// Slack incoming-webhook body: a text fallback and one coloured attachment.
    pub fn slack_body(&self) -> Value {
        let (headline, detail) = self.lines();
        let colour = match (self.state, self.severity) {
            (AlertState::Resolved, _) => "#2eb67d",
            (AlertState::Test, _) => "#439fe0",
            (_, Severity::Critical) => "#e01e5a",
            _ => "#ecb22e",
        };
        json!({
            "text": format!("{headline}: {detail}"),
            "attachments": [{
                "color": colour,
                "title": headline,
                "text": detail,
                "fields": [
                    {"title": "Rule", "value": self.rule, "short": true},
                    {"title": "Severity", "value": self.severity.to_string(), "short": true},
                    {"title": "Model", "value": self.model, "short": true},
                    {"title": "State", "value": serde_json::to_value(self.state).unwrap_or(Value::Null), "short": true},
                ],
                "footer": format!("capwatch · {} · id {}", self.timestamp, self.id),
            }],
        })
    }

    /// Telegram `sendMessage` body (plain text, so nothing needs escaping).
    pub fn telegram_body(&self, chat_id: &str) -> Value {
        let (headline, detail) = self.lines();
        json!({
            "chat_id": chat_id,
            "text": format!("{headline}\n{detail}\nmodel {} · {} · id {}", self.model, self.timestamp, self.id),
            "link_preview_options": {"is_disabled": true},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::RuleKind;

    fn alert(transition: AlertTransition, severity: Severity) -> AlertEvent {
        AlertEvent {
            rule: RuleKind::P95Latency,
            severity,
            transition,
            value: 4200.5,
            threshold: 4000.0,
            instance: None,
        }
    }

    #[test]
    fn webhook_payload_has_the_documented_fields() {
        let n = Notification::from_alert(
            &alert(AlertTransition::Fired, Severity::Warning),
            "captions-eu",
            "default",
            "2026-11-26T14:00:00.000Z".to_owned(),
        );
        let body = n.webhook_body();
        assert_eq!(body["rule"], "p95_latency");
        assert_eq!(body["severity"], "warning");
        assert_eq!(body["state"], "firing");
        assert_eq!(body["reason"], "fired");
        assert_eq!(body["resolved"], false);
        assert_eq!(body["value"], 4200.5);
        assert_eq!(body["threshold"], 4000.0);
        assert_eq!(body["value_text"], "4200.5ms");
        assert_eq!(body["service"], "captions-eu");
        assert_eq!(body["model"], "default");
        assert_eq!(body["timestamp"], "2026-11-26T14:00:00.000Z");
        assert_eq!(body["version"], 1);
        let id = uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert!(body.get("resent").is_none(), "left out unless resent");
        assert_eq!(n.clone().as_resent().webhook_body()["resent"], true);
        assert_ne!(
            n.id,
            Notification::from_alert(&alert(AlertTransition::Fired, Severity::Warning), "s", "m", String::new()).id
        );
        assert_eq!(body["message"], "🚨 ALERT: p95_latency = 4200.5ms (Warning threshold exceeded)");
    }

    #[test]
    fn resolved_and_repeated_read_as_such() {
        let resolved = Notification::from_alert(
            &AlertEvent { value: 900.0, ..alert(AlertTransition::Resolved, Severity::Ok) },
            "capwatch",
            "default",
            String::new(),
        );
        assert!(resolved.resolved);
        assert_eq!(resolved.webhook_body()["state"], "resolved");
        let slack = resolved.slack_body();
        assert!(slack["text"].as_str().unwrap().starts_with("✅ RESOLVED · capwatch"), "{slack}");
        assert_eq!(slack["attachments"][0]["color"], "#2eb67d");
        let repeated = Notification::from_alert(
            &alert(AlertTransition::Repeated, Severity::Critical),
            "capwatch",
            "m",
            String::new(),
        );
        let telegram = repeated.telegram_body("-100");
        assert_eq!(telegram["chat_id"], "-100");
        assert!(telegram["text"].as_str().unwrap().starts_with("🔁 STILL CRITICAL · capwatch\np95_latency = 4200.5ms"));
    }
}
