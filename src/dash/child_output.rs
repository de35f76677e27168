//! What the child server says about itself: the URL in its "listening" log line, the
//! message of its last error line, and how it exited. Pure text handling, no I/O.

/// The exit code, or the signal that ended it.
pub fn exit_parts(status: Option<std::process::ExitStatus>) -> (Option<i32>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    status.map_or((None, None), |s| (s.code(), s.signal()))
}

/// `exit code 1: <the child's last error line>` — how a child ended, and why as it said.
pub fn describe_exit(status: Option<std::process::ExitStatus>, tail: &[String]) -> String {
    let how = match exit_parts(status) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "unknown exit".to_owned(),
    };
    // The most useful line is usually the last error the child printed.
    let last = tail.iter().rev().find(|l| !l.trim().is_empty()).map(|l| summarize_log_line(l));
    match last {
        Some(line) => format!("{how}: {line}"),
        None => how,
    }
}

/// The message of a JSON log line (or the line itself).
fn summarize_log_line(line: &str) -> String {
    // `capwatch serve` ends with `error: <why>` on stderr, after its JSON lines.
    let plain = || line.trim().trim_start_matches("error: ").to_owned();
    parse_log_line(line).map_or_else(plain, |(_, message)| message)
}

/// The level (`INFO`, `WARN`, `ERROR`, …) and `message: error` of one of the child's JSON
/// log lines; None for a line that is not JSON.
pub fn parse_log_line(line: &str) -> Option<(String, String)> {
    let value = serde_json::from_str::<serde_json::Value>(line).ok()?;
    let level = value.get("level").and_then(|l| l.as_str()).unwrap_or_default().to_owned();
    let message = value.get("message").and_then(|m| m.as_str()).unwrap_or(line);
    let text = match value.get("error").and_then(|e| e.as_str()) {
        Some(error) => format!("{message}: {error}"),
        None => message.to_owned(),
    };
    Some((level, text))
}

/// The URL from the server's "listening" log line (JSON or text format).
pub fn listening_url(line: &str) -> Option<String> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(line) {
        return value.get("url").and_then(|u| u.as_str()).map(str::to_owned);
    }
    let start = line.find("url=http://")? + "url=".len();
    Some(line[start..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_url_in_json_and_text_logs() {
        let json = r#"{"timestamp":"x","level":"INFO","message":"capwatch serve listening (docs at /docs)","url":"http://127.0.0.1:4321","model_dir":"m"}"#;
        assert_eq!(listening_url(json).as_deref(), Some("http://127.0.0.1:4321"));
        let text =
            "2026-11-26T12:00:00Z  INFO capwatch: capwatch serve listening url=http://127.0.0.1:8000 model_dir=m";
        assert_eq!(listening_url(text).as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(listening_url(r#"{"message":"model loaded"}"#), None);
    }

    #[test]
    fn failure_reasons_quote_the_childs_last_error() {
        let tail = vec![r#"{"level":"ERROR","message":"model failed to load","error":"cannot load model from x: no such directory"}"#.to_owned()];
        assert_eq!(
            describe_exit(None, &tail),
            "unknown exit: model failed to load: cannot load model from x: no such directory"
        );
    }
}
