//! `alerts:` — cooldown, notification sinks and delivery settings, checked when the file is
//! read. Sinks only name the environment variables holding secrets; this module must never
//! read them, send anything or start anything.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Seconds, nz, secs};

/// `alerts:` — how often a still-firing alert repeats, and where notifications go.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub cooldown_s: Seconds,
    /// The service name notifications carry (several capwatch instances can share a channel).
    pub service_name: String,
    /// Notification sinks (Slack, Telegram, generic webhook); none by default.
    pub sinks: Sinks,
    /// Timeouts, retries and queueing, shared by every sink.
    pub delivery: DeliveryConfig,
    /// Notifications are marked as a drill (`capwatch drill`); not a config key.
    #[serde(skip)]
    pub drill: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            cooldown_s: secs(300),
            service_name: "capwatch".to_owned(),
            sinks: Sinks::default(),
            delivery: DeliveryConfig::default(),
            drill: false,
        }
    }
}

/// The configured sinks, with unique names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(try_from = "Vec<SinkConfig>", into = "Vec<SinkConfig>")]
pub struct Sinks(pub Vec<SinkConfig>);

impl From<Sinks> for Vec<SinkConfig> {
    fn from(sinks: Sinks) -> Self {
        sinks.0
    }
}

impl TryFrom<Vec<SinkConfig>> for Sinks {
    type Error = String;

    fn try_from(sinks: Vec<SinkConfig>) -> Result<Self, String> {
        for (index, sink) in sinks.iter().enumerate() {
            if sinks[..index].iter().any(|other| other.name == sink.name) {
                return Err(format!(
                    "two sinks are named `{}`: give sink {} (counting from 0) its own `name`",
                    sink.name, index
                ));
            }
        }
        Ok(Self(sinks))
    }
}

/// Which API a notification sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Slack incoming webhook: POST `{text, attachments}` to the webhook URL.
    Slack,
    /// Telegram Bot API: POST `{chat_id, text}` to `{api_url}/bot{token}/sendMessage`.
    Telegram,
    /// Any HTTP endpoint: POST the documented JSON payload.
    Webhook,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Telegram => "telegram",
            Self::Webhook => "webhook",
        }
    }
}

/// The least severe alert a sink is told about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    #[default]
    Warning,
    Critical,
}

/// One notification sink, checked when the file is read. Secrets (URLs, tokens) are never
/// in the config: it names the environment variables that hold them.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(try_from = "RawSinkConfig", into = "RawSinkConfig")]
pub struct SinkConfig {
    /// Shown in the UI, logs and metric labels; defaults to the kind. Unique.
    pub name: String,
    pub min_severity: MinSeverity,
    pub target: SinkTarget,
}

/// Where a sink posts, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    /// Slack incoming webhook; the variable holds the webhook URL.
    Slack { webhook_url_env: String },
    /// Telegram Bot API `sendMessage`; the variable holds the bot token.
    Telegram { bot_token_env: String, chat_id: String, api_url: String },
    /// Generic JSON webhook; the variables hold the URL and an optional bearer token.
    Webhook { url_env: String, bearer_token_env: Option<String> },
}

impl SinkTarget {
    pub fn kind(&self) -> SinkKind {
        match self {
            Self::Slack { .. } => SinkKind::Slack,
            Self::Telegram { .. } => SinkKind::Telegram,
            Self::Webhook { .. } => SinkKind::Webhook,
        }
    }
}

/// A sink as written in the file: every key of every kind, checked in `try_from`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawSinkConfig {
    kind: SinkKind,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    min_severity: MinSeverity,
    #[serde(default)]
    webhook_url_env: Option<String>,
    #[serde(default)]
    bot_token_env: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    chat_id: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    bearer_token_env: Option<String>,
}

/// Telegram chat ids are numbers (`-1001234567890`) or `@channel` names; take either.
fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize, serde::Serialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(Option::<Id>::deserialize(deserializer)?.map(|id| match id {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    }))
}

/// The keys a sink is written with (the config a child server gets is this, serialised).
impl From<SinkConfig> for RawSinkConfig {
    fn from(sink: SinkConfig) -> Self {
        let mut raw = Self {
            kind: sink.target.kind(),
            name: Some(sink.name),
            min_severity: sink.min_severity,
            webhook_url_env: None,
            bot_token_env: None,
            chat_id: None,
            api_url: None,
            url_env: None,
            bearer_token_env: None,
        };
        match sink.target {
            SinkTarget::Slack { webhook_url_env } => raw.webhook_url_env = Some(webhook_url_env),
            SinkTarget::Telegram { bot_token_env, chat_id, api_url } => {
                raw.bot_token_env = Some(bot_token_env);
                raw.chat_id = Some(chat_id);
                raw.api_url = Some(api_url);
            }
            SinkTarget::Webhook { url_env, bearer_token_env } => {
                raw.url_env = Some(url_env);
                raw.bearer_token_env = bearer_token_env;
            }
        }
        raw
    }
}

impl TryFrom<RawSinkConfig> for SinkConfig {
    type Error = String;

    fn try_from(raw: RawSinkConfig) -> Result<Self, String> {
        let kind = raw.kind.name();
        let required = |value: Option<String>, key: &str, what: &str| {
            value.filter(|v| !v.trim().is_empty()).ok_or_else(|| format!("a {kind} sink needs `{key}` ({what})"))
        };
        let mut foreign = Vec::new();
        let mut not_for = |value: &Option<String>, key: &'static str| {
            if value.is_some() {
                foreign.push(key);
            }
        };
        let target = match raw.kind {
            SinkKind::Slack => {
                not_for(&raw.bot_token_env, "bot_token_env");
                not_for(&raw.chat_id, "chat_id");
                not_for(&raw.api_url, "api_url");
                not_for(&raw.url_env, "url_env");
                not_for(&raw.bearer_token_env, "bearer_token_env");
                SinkTarget::Slack {
                    webhook_url_env: required(
                        raw.webhook_url_env,
                        "webhook_url_env",
                        "the environment variable holding the incoming-webhook URL",
                    )?,
                }
            }
            SinkKind::Telegram => {
                not_for(&raw.webhook_url_env, "webhook_url_env");
                not_for(&raw.url_env, "url_env");
                not_for(&raw.bearer_token_env, "bearer_token_env");
                SinkTarget::Telegram {
                    bot_token_env: required(
                        raw.bot_token_env,
                        "bot_token_env",
                        "the environment variable holding the bot token",
                    )?,
                    chat_id: required(raw.chat_id, "chat_id", "the chat to post to")?,
                    api_url: raw.api_url.unwrap_or_else(|| "https://api.telegram.org".to_owned()),
                }
            }
            SinkKind::Webhook => {
                not_for(&raw.webhook_url_env, "webhook_url_env");
                not_for(&raw.bot_token_env, "bot_token_env");
                not_for(&raw.chat_id, "chat_id");
                not_for(&raw.api_url, "api_url");
                SinkTarget::Webhook {
                    url_env: required(raw.url_env, "url_env", "the environment variable holding the endpoint URL")?,
                    bearer_token_env: raw.bearer_token_env,
                }
            }
        };
        if let Some(key) = foreign.first() {
            return Err(format!("`{key}` does not apply to a {kind} sink"));
        }
        Ok(Self { name: raw.name.unwrap_or_else(|| kind.to_owned()), min_severity: raw.min_severity, target })
    }
}

/// `alerts.delivery:` — how hard notifications are pushed.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// One HTTP attempt's time limit.
    pub timeout_s: Seconds,
    /// Attempts per notification (first try included).
    pub max_attempts: NonZeroUsize,
    /// Wait before the first retry; doubles on each retry up to `max_backoff_s`.
    pub initial_backoff_s: Seconds,
    pub max_backoff_s: Seconds,
    /// Notifications waiting per sink; beyond this new ones are dropped (and reported).
    pub queue_capacity: NonZeroUsize,
    /// Extra CA certificates (PEM) to trust for HTTPS sinks, e.g. a company CA; the system
    /// store and the webpki roots are always trusted.
    pub ca_file: Option<PathBuf>,
    /// The notification spool in `logs.dir` (or an absolute path): every notification is
    /// written there before its first attempt and sent again at the next start until it
    /// is delivered.
    pub spool_file: PathBuf,
    /// Undelivered notifications kept in the spool; beyond this the oldest are discarded.
    pub spool_max_pending: NonZeroUsize,
    /// Undelivered notifications older than this are not sent again.
    pub spool_max_age_s: Seconds,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout_s: secs(5),
            max_attempts: nz(4),
            initial_backoff_s: secs(1),
            max_backoff_s: secs(30),
            queue_capacity: nz(32),
            ca_file: None,
            spool_file: PathBuf::from("notification_spool.jsonl"),
            spool_max_pending: nz(1000),
            spool_max_age_s: secs(86_400),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn sinks_are_checked_with_key_and_line() {
        let config = parse(
            "alerts:\n  sinks:\n    - kind: slack\n      webhook_url_env: SLACK_URL\n    - kind: telegram\n      name: oncall\n      bot_token_env: TG_TOKEN\n      chat_id: \"-100\"\n      min_severity: critical\n    - kind: webhook\n      url_env: HOOK_URL\n",
        )
        .unwrap();
        let sinks = &config.alerts.sinks.0;
        assert_eq!(sinks[0].name, "slack");
        assert_eq!(sinks[0].target, SinkTarget::Slack { webhook_url_env: "SLACK_URL".to_owned() });
        assert_eq!(sinks[1].name, "oncall");
        assert_eq!(sinks[1].min_severity, MinSeverity::Critical);
        assert!(
            matches!(&sinks[1].target, SinkTarget::Telegram { api_url, .. } if api_url == "https://api.telegram.org")
        );
        assert_eq!(sinks[2].min_severity, MinSeverity::Warning);

        let config =
            parse("alerts:\n  sinks:\n    - kind: telegram\n      bot_token_env: TG\n      chat_id: -1001234567890\n")
                .unwrap();
        assert!(
            matches!(&config.alerts.sinks.0[0].target, SinkTarget::Telegram { chat_id, .. } if chat_id == "-1001234567890")
        );
        let err = parse("alerts:\n  sinks:\n    - kind: telegram\n      bot_token_env: TG\n").unwrap_err();
        assert!(err.to_string().contains("alerts.sinks[0]") && err.to_string().contains("`chat_id`"), "{err}");
        assert!(err.to_string().starts_with("test.yaml:3:"), "{err}");
        let err = parse("alerts:\n  sinks:\n    - kind: slack\n      url_env: X\n").unwrap_err();
        assert!(err.to_string().contains("webhook_url_env"), "{err}");
        let err =
            parse("alerts:\n  sinks:\n    - kind: slack\n      webhook_url_env: A\n      chat_id: x\n").unwrap_err();
        assert!(err.to_string().contains("`chat_id` does not apply to a slack sink"), "{err}");
        let err = parse("alerts:\n  sinks:\n    - kind: pager\n").unwrap_err();
        assert!(err.to_string().contains("alerts.sinks[0].kind") && err.to_string().contains(":3:"), "{err}");
        let err =
            parse("alerts:\n  sinks:\n    - kind: webhook\n      url_env: A\n    - kind: webhook\n      url_env: B\n")
                .unwrap_err();
        assert!(err.to_string().contains("two sinks are named `webhook`"), "{err}");
        assert!(err.to_string().contains("alerts.sinks"), "{err}");
    }
}
