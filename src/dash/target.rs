//! What a monitoring session watches: the server it launches as its child, or servers that
//! are already running, each with the name it goes by (from the command line's URLs or the
//! config's `monitoring.targets`, checked: valid, unique). Pure: no I/O.

use super::supervisor::ServeCommand;

/// What to watch.
#[derive(Debug, Clone)]
pub enum Target {
    /// Launch and supervise this server command.
    Child(ServeCommand),
    /// Watch servers that are already running (several: one dashboard for all of them).
    Urls(Vec<Watched>),
}

/// One server to watch and the name it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub name: String,
    pub url: String,
}

impl Watched {
    /// The instances to watch: `urls` from the command line, or else the config's
    /// `monitoring.targets`. Named by the config, or by the URL's host and port; names and
    /// URLs must be unique. None at all is fine only when discovery will list some.
    pub fn resolve(
        urls: &[String],
        targets: &[crate::config::WatchTarget],
        discovering: bool,
    ) -> Result<Vec<Self>, String> {
        let wanted: Vec<(Option<String>, String)> = if urls.is_empty() {
            targets.iter().map(|target| (target.name.clone(), target.url.clone())).collect()
        } else {
            urls.iter().map(|url| (None, url.clone())).collect()
        };
        if wanted.is_empty() && !discovering {
            return Err("nothing to watch: give --url (repeat it for several instances), --discover SOURCE, or \
                        list monitoring.targets in the config"
                .to_owned());
        }
        let mut watched: Vec<Self> = Vec::new();
        for (name, url) in wanted {
            let parsed = reqwest::Url::parse(&url).map_err(|err| format!("bad URL {url:?}: {err}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(format!("bad URL {url:?}: expected http://HOST:PORT"));
            }
            let url = url.trim_end_matches('/').to_owned();
            let name = name.unwrap_or_else(|| {
                let host = parsed.host_str().unwrap_or_default();
                parsed.port_or_known_default().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}"))
            });
            if watched.iter().any(|other| other.url == url) {
                return Err(format!("{url} is listed twice"));
            }
            if watched.iter().any(|other| other.name == name) {
                return Err(format!("two instances are named {name:?}: give them names (monitoring.targets)"));
            }
            watched.push(Self { name, url });
        }
        Ok(watched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WatchTarget;

    #[test]
    fn urls_are_named_by_host_and_port_and_must_be_unique() {
        let urls = ["http://10.0.0.5:8000/".to_owned(), "https://replica.example".to_owned()];
        let watched = Watched::resolve(&urls, &[], false).unwrap();
        assert_eq!(watched[0], Watched { name: "10.0.0.5:8000".to_owned(), url: "http://10.0.0.5:8000".to_owned() });
        assert_eq!(watched[1].name, "replica.example:443");
        let twice = ["http://a:1".to_owned(), "http://a:1/".to_owned()];
        assert!(Watched::resolve(&twice, &[], false).unwrap_err().contains("listed twice"));
        assert!(
            Watched::resolve(&["ftp://a:1".to_owned()], &[], false).unwrap_err().contains("expected http://HOST:PORT")
        );
    }

    #[test]
    fn the_config_names_its_targets_and_nothing_is_fine_only_with_discovery() {
        let target = |name: &str, url: &str| WatchTarget { name: Some(name.to_owned()), url: url.to_owned() };
        let targets = [target("alpha", "http://a:1"), target("alpha", "http://b:1")];
        assert!(Watched::resolve(&[], &targets, false).unwrap_err().contains("two instances are named"));
        assert_eq!(Watched::resolve(&[], &targets[..1], false).unwrap()[0].name, "alpha");
        // URLs on the command line win over the config's targets.
        assert_eq!(Watched::resolve(&["http://c:2".to_owned()], &targets, false).unwrap()[0].name, "c:2");
        assert!(Watched::resolve(&[], &[], false).unwrap_err().starts_with("nothing to watch"));
        assert!(Watched::resolve(&[], &[], true).unwrap().is_empty());
    }
}
