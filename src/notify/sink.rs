//! A configured sink with its secrets read from the environment, and one HTTP attempt to
//! deliver a notification to it. Secrets never leave this module: every error text is
//! redacted before it is returned, and reqwest errors are stripped of their URL.

use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::message::Notification;
use crate::config::{MinSeverity, SinkConfig, SinkKind, SinkTarget};

/// Why a notification did not get through, as the screen, the log and the metrics file
/// name it. Decided here, where the failure happens, never guessed back from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The sink answered with this HTTP status (or Telegram said `ok: false`).
    Http(u16),
    /// No answer within the delivery timeout.
    Timeout,
    /// Nothing listens at the sink's address.
    Refused,
    /// The sink's TLS certificate is not trusted.
    Certificate,
    /// Any other transport failure (DNS, reset connection, …).
    Network,
}

impl FailureKind {
    /// A few characters for the alert panel's edge: `HTTP 500`, `timeout`, `refused`.
    pub fn short(self) -> String {
        match self {
            Self::Http(status) => format!("HTTP {status}"),
            Self::Timeout => "timeout".to_owned(),
            Self::Refused => "refused".to_owned(),
            Self::Certificate => "bad certificate".to_owned(),
            Self::Network => "network error".to_owned(),
        }
    }
}

/// Why the sinks cannot be set up (a config or environment problem: exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("alerts.sinks[{index}].{key}: environment variable {var} is not set (it must hold {what})")]
    MissingSecret { index: usize, key: &'static str, var: String, what: &'static str },
    #[error("alerts.sinks[{index}].{key}: the value of {var} is not an http:// or https:// URL")]
    BadUrl { index: usize, key: &'static str, var: String },
    #[error("alerts.delivery.ca_file: cannot use {path} as PEM CA certificates: {reason}")]
    CaFile { path: std::path::PathBuf, reason: String },
    #[error("cannot build the HTTP client for notifications: {0}")]
    Client(String),
    #[error("alerts.delivery.spool_file: cannot use {path}: {source}")]
    Spool { path: std::path::PathBuf, source: std::io::Error },
}

impl NotifyError {
    /// 2 for what the config or environment got wrong, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::MissingSecret { .. } | Self::BadUrl { .. } | Self::CaFile { .. } => 2,
            Self::Client(_) | Self::Spool { .. } => 1,
        }
    }
}

/// Where the request goes and what it carries.
#[derive(Clone)]
enum Endpoint {
    Slack { url: reqwest::Url },
    Telegram { send_message_url: reqwest::Url, chat_id: String },
    Webhook { url: reqwest::Url, bearer_token: Option<String> },
}

/// A sink ready to send: name, filter, endpoint and the secrets to redact.
#[derive(Clone)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub min_severity: MinSeverity,
    endpoint: Endpoint,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Sink {
    /// Without the endpoint: it holds secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Why one attempt failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    /// Timeouts, refused connections, 5xx, 429 (with the wait the server asked for).
    Retryable { message: String, kind: FailureKind, retry_after: Option<Duration> },
    /// The sink rejected the request (4xx, Telegram `ok: false`): retrying will not help.
    Permanent { message: String, kind: FailureKind },
}

impl AttemptError {
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable { message, .. } | Self::Permanent { message, .. } => message,
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Retryable { kind, .. } | Self::Permanent { kind, .. } => *kind,
        }
    }
}

/// Longest slice of a response body quoted in an error.
const BODY_EXCERPT: usize = 200;

fn parse_url(text: &str, index: usize, key: &'static str, var: &str) -> Result<reqwest::Url, NotifyError> {
    reqwest::Url::parse(text.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| NotifyError::BadUrl { index, key, var: var.to_owned() })
}

impl Sink {
    /// Resolves every configured sink, reading secrets through `env` (the process
    /// environment in production).
    pub fn resolve_all(sinks: &[SinkConfig], env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Self>, NotifyError> {
        sinks.iter().enumerate().map(|(index, sink)| Self::resolve(index, sink, env)).collect()
    }

    fn resolve(index: usize, config: &SinkConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, NotifyError> {
        let secret = |key: &'static str, var: &str, what: &'static str| {
            env(var).filter(|value| !value.trim().is_empty()).ok_or_else(|| NotifyError::MissingSecret {
                index,
                key,
                var: var.to_owned(),
                what,
            })
        };
        let mut secrets = Vec::new();
        let endpoint = match &config.target {
            SinkTarget::Slack { webhook_url_env } => {
                let url = secret("webhook_url_env", webhook_url_env, "the Slack incoming-webhook URL")?;
                secrets.push(url.clone());
                Endpoint::Slack { url: parse_url(&url, index, "webhook_url_env", webhook_url_env)? }
            }
            SinkTarget::Telegram { bot_token_env, chat_id, api_url } => {
                let token = secret("bot_token_env", bot_token_env, "the Telegram bot token")?;
                secrets.push(token.clone());
                let base = parse_url(api_url, index, "api_url", "api_url")?;
                let text = format!("{}/bot{}/sendMessage", base.as_str().trim_end_matches('/'), token.trim());
                let send_message_url = parse_url(&text, index, "bot_token_env", bot_token_env)?;
                Endpoint::Telegram { send_message_url, chat_id: chat_id.clone() }
            }
            SinkTarget::Webhook { url_env, bearer_token_env } => {
                let url = secret("url_env", url_env, "the webhook URL")?;
                secrets.push(url.clone());
                let bearer_token = match bearer_token_env {
                    Some(var) => {
                        let token = secret("bearer_token_env", var, "the webhook's bearer token")?;
                        secrets.push(token.clone());
                        Some(token)
                    }
                    None => None,
                };
                Endpoint::Webhook { url: parse_url(&url, index, "url_env", url_env)?, bearer_token }
            }
        };
        // Parts of a secret URL (its path, its query) are secrets too; the host is not.
        if let Endpoint::Slack { url } | Endpoint::Webhook { url, .. } = &endpoint {
            secrets.extend([url.path().to_owned(), url.query().unwrap_or_default().to_owned()]);
        }
        secrets.retain(|secret| secret.len() >= 4 && secret != "/");
        Ok(Self {
            name: config.name.clone(),
            kind: config.target.kind(),
            min_severity: config.min_severity,
            endpoint,
            secrets,
        })
    }

    /// `text` with every secret of this sink replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        text
    }

    /// One delivery attempt; `Ok` carries the HTTP status.
    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        notification: &Notification,
        timeout: Duration,
    ) -> Result<u16, AttemptError> {
        let request = match &self.endpoint {
            Endpoint::Slack { url } => client.post(url.clone()).json(&notification.slack_body()),
            Endpoint::Telegram { send_message_url, chat_id } => {
                client.post(send_message_url.clone()).json(&notification.telegram_body(chat_id))
            }
            Endpoint::Webhook { url, bearer_token } => {
                let request = client.post(url.clone()).json(&notification.webhook_body());
                match bearer_token {
                    Some(token) => request.bearer_auth(token),
                    None => request,
                }
            }
        };
        let result = self.send(request.timeout(timeout), timeout).await;
        result.map_err(|error| match error {
            AttemptError::Retryable { message, kind, retry_after } => {
                AttemptError::Retryable { message: self.redact(&message), kind, retry_after }
            }
            AttemptError::Permanent { message, kind } => {
                AttemptError::Permanent { message: self.redact(&message), kind }
            }
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder, timeout: Duration) -> Result<u16, AttemptError> {
        let response = request.send().await.map_err(|error| transport_error(error, timeout))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.map_err(|error| transport_error(error, timeout))?;
        if self.kind == SinkKind::Telegram {
            return telegram_verdict(status, &body, retry_after);
        }
        if status.is_success() {
            return Ok(status.as_u16());
        }
        Err(http_error(status, &body, retry_after))
    }
}

/// Telegram answers `{"ok": true, ...}` or `{"ok": false, "description": ..., "parameters": {"retry_after": N}}`.
fn telegram_verdict(status: StatusCode, body: &str, retry_after: Option<Duration>) -> Result<u16, AttemptError> {
    let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if status.is_success() && answer["ok"] == true {
        return Ok(status.as_u16());
    }
    let retry_after = retry_after.or_else(|| answer["parameters"]["retry_after"].as_u64().map(Duration::from_secs));
    match answer["description"].as_str() {
        Some(description) if !status.is_server_error() && status != StatusCode::TOO_MANY_REQUESTS => {
            Err(AttemptError::Permanent {
                message: format!("HTTP {}: Telegram says: {description}", status.as_u16()),
                kind: FailureKind::Http(status.as_u16()),
            })
        }
        _ if status.is_success() => Err(AttemptError::Permanent {
            message: format!("HTTP {}: Telegram did not answer ok", status.as_u16()),
            kind: FailureKind::Http(status.as_u16()),
        }),
        _ => Err(http_error(status, body, retry_after)),
    }
}

fn http_error(status: StatusCode, body: &str, retry_after: Option<Duration>) -> AttemptError {
    let mut excerpt: String = body.trim().chars().take(BODY_EXCERPT).collect();
    if body.trim().chars().count() > BODY_EXCERPT {
        excerpt.push('…');
    }
    let reason = status.canonical_reason().unwrap_or("");
    let message = if excerpt.is_empty() {
        format!("HTTP {} {reason}", status.as_u16())
    } else {
        format!("HTTP {} {reason}: {excerpt}", status.as_u16())
    };
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
        AttemptError::Retryable { message, kind: FailureKind::Http(status.as_u16()), retry_after }
    } else {
        AttemptError::Permanent { message, kind: FailureKind::Http(status.as_u16()) }
    }
}

/// A failure before any answer: worth retrying, except a certificate the client does not
/// trust (that will not change by itself). The URL is dropped from the text.
fn transport_error(error: reqwest::Error, timeout: Duration) -> AttemptError {
    if error.is_timeout() {
        return AttemptError::Retryable {
            message: format!("no answer within {:.1} s", timeout.as_secs_f64()),
            kind: FailureKind::Timeout,
            retry_after: None,
        };
    }
    let refused = error.is_connect();
    let message = crate::http_client::describe(&error.without_url());
    if message.contains("invalid peer certificate") {
        return AttemptError::Permanent { message, kind: FailureKind::Certificate };
    }
    let kind =
        if refused && message.contains("Connection refused") { FailureKind::Refused } else { FailureKind::Network };
    AttemptError::Retryable { message, kind, retry_after: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn sinks(yaml: &str) -> Vec<SinkConfig> {
        Config::parse(yaml, std::path::Path::new("t.yaml")).unwrap().alerts.sinks.0
    }

    #[test]
    fn missing_or_bad_secrets_name_the_key_and_variable() {
        let config = sinks("alerts:\n  sinks:\n    - kind: slack\n      webhook_url_env: MY_SLACK_URL\n");
        let err = Sink::resolve_all(&config, &|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "alerts.sinks[0].webhook_url_env: environment variable MY_SLACK_URL is not set (it must hold the Slack incoming-webhook URL)"
        );
        let err = Sink::resolve_all(&config, &|_| Some("hooks.slack.com/services/SECRET".to_owned())).unwrap_err();
        assert!(err.to_string().contains("is not an http:// or https:// URL"), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn redaction_covers_tokens_and_secret_url_parts() {
        let config = sinks(
            "alerts:\n  sinks:\n    - kind: telegram\n      bot_token_env: TG\n      chat_id: '1'\n    - kind: slack\n      webhook_url_env: SL\n",
        );
        let env = |var: &str| match var {
            "TG" => Some("123456:ABCDEF".to_owned()),
            "SL" => Some("https://hooks.slack.com/services/T1/B2/XYZ".to_owned()),
            _ => None,
        };
        let resolved = Sink::resolve_all(&config, &env).unwrap();
        assert_eq!(
            resolved[0].redact("POST https://api.telegram.org/bot123456:ABCDEF/sendMessage failed"),
            "POST https://api.telegram.org/bot[redacted]/sendMessage failed"
        );
        assert_eq!(resolved[1].redact("url /services/T1/B2/XYZ"), "url [redacted]");
        assert!(!format!("{:?}", resolved[1]).contains("XYZ"));
    }

    #[test]
    fn http_errors_are_classified() {
        assert!(matches!(http_error(StatusCode::INTERNAL_SERVER_ERROR, "boom", None), AttemptError::Retryable { .. }));
        assert!(matches!(
            http_error(StatusCode::TOO_MANY_REQUESTS, "", Some(Duration::from_secs(3))),
            AttemptError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert_eq!(
            http_error(StatusCode::NOT_FOUND, "no_service", None),
            AttemptError::Permanent {
                message: "HTTP 404 Not Found: no_service".to_owned(),
                kind: FailureKind::Http(404)
            }
        );
        assert_eq!(
            telegram_verdict(
                StatusCode::UNAUTHORIZED,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
                None
            ),
            Err(AttemptError::Permanent {
                message: "HTTP 401: Telegram says: Unauthorized".to_owned(),
                kind: FailureKind::Http(401)
            })
        );
        assert!(matches!(
            telegram_verdict(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"ok":false,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#,
                None
            ),
            Err(AttemptError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(7)
        ));
        assert_eq!(telegram_verdict(StatusCode::OK, r#"{"ok":true,"result":{}}"#, None), Ok(200));
    }
}
