//! `dns:` discovery: the A and AAAA records of a name (a Kubernetes headless Service
//! answers one per ready pod), asked of the system's resolvers (`/etc/resolv.conf`, search
//! domains included) or of one configured nameserver. Nothing is cached: each lookup asks.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver as Hickory, TokioResolver};

use super::DiscoveryError;

/// How long one lookup may take before it counts as a failure.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Resolver(TokioResolver);

impl Resolver {
    /// Asks `nameserver` (UDP), or the system's resolvers when there is none.
    pub fn new(nameserver: Option<SocketAddr>) -> Result<Self, DiscoveryError> {
        let setup = |err: hickory_resolver::net::NetError| DiscoveryError::Setup(format!("DNS resolver: {err}"));
        let mut builder = match nameserver {
            Some(address) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let server = NameServerConfig::new(address.ip(), true, vec![udp]);
                Hickory::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(setup)?,
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.cache_size = 0;
        options.use_hosts_file = ResolveHosts::Never;
        options.timeout = LOOKUP_TIMEOUT;
        options.attempts = 1;
        Ok(Self(builder.build().map_err(setup)?))
    }

    /// Every address the name has now, sorted; a name without any is an error.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        let failed = |reason: String| DiscoveryError::Dns { name: name.to_owned(), reason };
        let lookup = self.0.lookup_ip(name).await.map_err(|err| {
            if err.is_nx_domain() {
                failed("no such name (NXDOMAIN)".to_owned())
            } else if err.is_no_records_found() {
                failed("the name has no A or AAAA record".to_owned())
            } else {
                failed(err.to_string())
            }
        })?;
        let mut addresses: Vec<IpAddr> = lookup.iter().collect();
        addresses.sort();
        addresses.dedup();
        if addresses.is_empty() {
            return Err(failed("the name has no A or AAAA record".to_owned()));
        }
        Ok(addresses)
    }
}
