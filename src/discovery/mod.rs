//! Service discovery: turns a source (`monitoring.discovery.source`) into the list of
//! instances it names right now — the A/AAAA records of a DNS name ([`dns`]), a Prometheus
//! `file_sd` file or `http_sd` endpoint ([`groups`]). It only reads; what a change in the
//! list means (joins, leaves) is the dashboard's decision.
//!
//! Each target is named from its labels (`name`, then the pod name) when they name it
//! uniquely, else by its address; every target has an `http(s)://host:port` URL.

mod dns;
mod groups;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{DiscoveryConfig, DiscoverySource, Scheme};

/// One instance a source lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub name: String,
    pub url: String,
}

/// Why a source could not be read this time (the caller keeps the last list it had).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("{name} does not resolve: {reason}")]
    Dns { name: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// (The source names the URL already.)
    #[error("{reason}")]
    Http { url: String, reason: String },
    #[error("{what} is not a target list: {reason}")]
    Format { what: String, reason: String },
    #[error("cannot set up discovery: {0}")]
    Setup(String),
}

/// Reads one source, as often as asked.
pub struct Discoverer {
    source: DiscoverySource,
    scheme: Scheme,
    how: How,
    /// A file's modification time and length when it was last read.
    file_stamp: Option<(SystemTime, u64)>,
}

enum How {
    Dns(Box<dns::Resolver>),
    File,
    Http(reqwest::Client),
}

impl Discoverer {
    /// A reader of `config.source` (which must be set); `ca_file` is trusted for an `https://` endpoint.
    pub fn new(config: &DiscoveryConfig, ca_file: Option<&Path>) -> Result<Self, DiscoveryError> {
        let source = config.source.clone().ok_or_else(|| DiscoveryError::Setup("no source".to_owned()))?;
        let how = match &source {
            DiscoverySource::Dns { .. } => How::Dns(Box::new(dns::Resolver::new(config.nameserver)?)),
            DiscoverySource::File(_) => How::File,
            DiscoverySource::Http(_) => {
                let timeout = config.refresh_s.0.clamp(Duration::from_secs(1), Duration::from_secs(30));
                let client = crate::http_client::builder(ca_file)
                    .map_err(DiscoveryError::Setup)?
                    .timeout(timeout)
                    .build()
                    .map_err(|err| DiscoveryError::Setup(err.to_string()))?;
                How::Http(client)
            }
        };
        Ok(Self { source, scheme: config.scheme, how, file_stamp: None })
    }

    /// The source, as the config writes it (`dns:name:8000`, `file:targets.json`, a URL).
    pub fn source(&self) -> &DiscoverySource {
        &self.source
    }

    /// The instances the source lists now, each once.
    pub async fn discover(&mut self) -> Result<Vec<Discovered>, DiscoveryError> {
        let listed = match (&self.source, &self.how) {
            (DiscoverySource::Dns { name, port }, How::Dns(resolver)) => {
                let addresses = resolver.addresses(name).await?;
                addresses
                    .into_iter()
                    .map(|ip| {
                        let address = std::net::SocketAddr::new(ip, *port).to_string();
                        Discovered { url: format!("{}://{address}", self.scheme.name()), name: address }
                    })
                    .collect()
            }
            (DiscoverySource::File(path), How::File) => {
                let failed = |err: std::io::Error| DiscoveryError::File { path: path.clone(), reason: err.to_string() };
                self.file_stamp = file_stamp(path).ok();
                let text = tokio::fs::read_to_string(path).await.map_err(failed)?;
                groups::targets(&groups::parse_file(&text, path)?, self.scheme)?
            }
            (DiscoverySource::Http(url), How::Http(client)) => {
                let text = fetch(client, url).await?;
                groups::targets(&groups::parse_json(&text, url)?, self.scheme)?
            }
            _ => return Err(DiscoveryError::Setup("source and reader disagree".to_owned())),
        };
        Ok(unique(listed))
    }

    /// Whether a file source changed since it was last read (always false for other sources).
    pub fn file_changed(&self) -> bool {
        match &self.source {
            DiscoverySource::File(path) => file_stamp(path).ok() != self.file_stamp,
            _ => false,
        }
    }
}

fn file_stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.modified()?, metadata.len()))
}

/// `GET url` as Prometheus' `http_sd` does it: 200 and a JSON body, or an error.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, DiscoveryError> {
    let failed = |reason: String| DiscoveryError::Http { url: url.to_owned(), reason };
    let response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|err| failed(crate::http_client::describe(&err)))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(failed(format!("answered {status}, expected 200")));
    }
    response.text().await.map_err(|err| failed(crate::http_client::describe(&err)))
}

/// Each URL once (the first listing wins), and each name once: a name already taken falls
/// back to the address the URL carries.
fn unique(listed: Vec<Discovered>) -> Vec<Discovered> {
    let mut out: Vec<Discovered> = Vec::with_capacity(listed.len());
    for mut target in listed {
        if out.iter().any(|other| other.url == target.url) {
            continue;
        }
        if out.iter().any(|other| other.name == target.name) {
            target.name = address_of(&target.url);
        }
        out.push(target);
    }
    out
}

/// `host:port` of a URL (the URL itself if it has none).
pub fn address_of(url: &str) -> String {
    url.split_once("://").map_or(url, |(_, rest)| rest).trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests;
