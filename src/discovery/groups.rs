//! Prometheus' target groups, as `file_sd` files (JSON or YAML) and `http_sd` answers (JSON)
//! hold them: `[{"targets": ["10.0.0.5:8000", …], "labels": {"pod": "capwatch-0", …}}, …]`.
//! Parsing and naming only.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Discovered, DiscoveryError, address_of};
use crate::config::Scheme;

/// Labels that name a target, in the order they are tried (`name`, then the pod's name).
const NAME_LABELS: [&str; 4] = ["name", "pod", "__meta_kubernetes_pod_name", "kubernetes_pod_name"];
/// The label that says how to reach the group's targets (`http` or `https`).
const SCHEME_LABEL: &str = "__scheme__";

/// One group: addresses and the labels they share.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A `file_sd` file: JSON, or YAML (`.yml`/`.yaml`, or anything that is not JSON).
pub fn parse_file(text: &str, path: &Path) -> Result<Vec<Group>, DiscoveryError> {
    let what = path.display().to_string();
    if text.trim_start().starts_with('[') {
        return parse_json(text, &what);
    }
    serde_yaml_ng::from_str(text).map_err(|err| DiscoveryError::Format { what, reason: err.to_string() })
}

/// An `http_sd` answer (or a JSON file).
pub fn parse_json(text: &str, what: &str) -> Result<Vec<Group>, DiscoveryError> {
    serde_json::from_str(text).map_err(|err| DiscoveryError::Format { what: what.to_owned(), reason: err.to_string() })
}

/// Every group's targets with their URLs and names. A label names a target only when it
/// is the only target of its group (a group-wide `pod` label would name every one alike).
pub fn targets(groups: &[Group], scheme: Scheme) -> Result<Vec<Discovered>, DiscoveryError> {
    let mut out = Vec::new();
    for group in groups {
        let scheme = match group.labels.get(SCHEME_LABEL).map(String::as_str) {
            None => scheme.name(),
            Some("http") => "http",
            Some("https") => "https",
            Some(other) => {
                return Err(DiscoveryError::Format {
                    what: format!("{SCHEME_LABEL} {other:?}"),
                    reason: "expected http or https".to_owned(),
                });
            }
        };
        let label_name = (group.targets.len() == 1)
            .then(|| NAME_LABELS.iter().find_map(|label| group.labels.get(*label)))
            .flatten()
            .filter(|name| !name.trim().is_empty());
        for address in &group.targets {
            let url = url_of(address, scheme)?;
            let name = label_name.cloned().unwrap_or_else(|| address_of(&url));
            out.push(Discovered { name, url });
        }
    }
    Ok(out)
}

/// `host:port` (or a whole `http(s)://` URL) as a base URL without a trailing slash.
fn url_of(address: &str, scheme: &str) -> Result<String, DiscoveryError> {
    let text = if address.contains("://") { address.to_owned() } else { format!("{scheme}://{address}") };
    let bad = |reason: String| DiscoveryError::Format { what: format!("target {address:?}"), reason };
    let url = reqwest::Url::parse(&text).map_err(|err| bad(err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad("expected host:port".to_owned()));
    }
    Ok(text.trim_end_matches('/').to_owned())
}
