//! The HTTP client capwatch talks to servers and receivers with: rustls trusting the system
//! store, the webpki roots and, for one with a private CA, a CA file (PEM); towards a capwatch
//! server, the API key from `CAPWATCH_API_KEY`. It only builds clients; it sends nothing.

use std::path::Path;

/// The environment variable a client reads its capwatch API key from.
pub const API_KEY_ENV: &str = "CAPWATCH_API_KEY";

/// A client builder with capwatch's user agent that also trusts the certificates in `ca_file`;
/// the error names the file and why.
pub fn builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, String> {
    let mut builder = reqwest::Client::builder().user_agent(concat!("capwatch/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let ca_error = |reason: &dyn std::fmt::Display| format!("CA file {}: {reason}", path.display());
        let pem = std::fs::read(path).map_err(|err| ca_error(&err))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| ca_error(&err))?;
        if certificates.is_empty() {
            return Err(ca_error(&"no PEM certificate in it"));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    Ok(builder)
}

/// A client builder for a capwatch server: [`builder`], sending `Authorization: Bearer KEY`
/// when `API_KEY_ENV` holds a key (marked sensitive, so it is left out of debug output).
pub fn for_capwatch(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = std::env::var(API_KEY_ENV).ok().filter(|key| !key.trim().is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| format!("{API_KEY_ENV} holds characters a header cannot carry"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(builder(ca_file)?.default_headers(headers))
}

/// A transport error as one line: the error and each of its causes, without the URL (which
/// may carry a secret).
pub fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    if let Some(url) = error.url() {
        message = message.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_named() {
        let missing = builder(Some(Path::new("/nonexistent/ca.pem"))).err().unwrap_or_default();
        assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
        let dir = std::env::temp_dir().join(format!("capwatch-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = builder(Some(&empty)).err().unwrap_or_default();
        assert!(error.contains("no PEM certificate"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
