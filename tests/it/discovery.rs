//! `capwatch monitor --discover`, end to end with real servers on loopback: a Prometheus
//! `file_sd` fleet that grows from 2 to 4 servers and shrinks to 1 (joins and leaves
//! recorded, no alert for a server removed from the list, an alert for a listed server that
//! is killed); DNS discovery against a DNS server run inside the test (hickory) answering
//! several loopback addresses; `http_sd` against a local endpoint that fails for a while.

use crate::common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::Receiver;
use common::{KillOnDrop, repo_path};

/// Fast probing, quick rediscovery, and a webhook sink at `T_HOOK_URL`.
const FAST: [(&str, &str); 6] = [
    ("health_interval_s: 30", "health_interval_s: 0.3"),
    ("inference_interval_s: 10", "inference_interval_s: 0.5"),
    ("tests_per_cycle: 5 ", "tests_per_cycle: 1 "),
    ("probe_timeout_s: 30", "probe_timeout_s: 2"),
    ("    refresh_s: 30 ", "    refresh_s: 1 "),
    ("  sinks: []\n", "  sinks:\n    - kind: webhook\n      url_env: T_HOOK_URL\n"),
];

/// A real server; its log lines are kept (a server whose stderr nobody reads stops).
type Server = (KillOnDrop, String, std::sync::mpsc::Receiver<String>);

fn server() -> Server {
    ready(common::spawn_server(&repo_path("models/default"), &[]))
}

/// Once it answers healthy (a server that is still loading its model would alert, rightly).
fn ready(server: Server) -> Server {
    tokio::task::block_in_place(|| common::wait_ready(&server.1));
    server
}

/// Replaces the `file_sd` file in one step (a reader never sees half of it).
fn write_targets(path: &Path, targets: &[(&str, &str)]) {
    let groups: Vec<serde_json::Value> = targets
        .iter()
        .map(|(name, url)| {
            serde_json::json!({"targets": [url.trim_start_matches("http://")], "labels": {"pod": name, "zone": "a"}})
        })
        .collect();
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, serde_json::to_string_pretty(&groups).unwrap()).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn records_of<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sd_fleet_grows_and_shrinks_and_only_a_listed_server_that_dies_alerts() {
    let _machine = common::whole_machine();
    let mut servers: Vec<Server> = (0..4).map(|_| server()).collect();
    let url = |i: usize, servers: &[Server]| servers[i].1.clone();
    let names = ["replica-a", "replica-b", "replica-c", "replica-d"];
    let receiver = Receiver::start();
    let (dir, config) = common::monitor_config("discovery-file", &FAST);
    let targets = dir.join("targets.json");
    let listed = |count: usize, servers: &[Server]| -> Vec<(&str, String)> {
        (0..count).map(|i| (names[i], url(i, servers))).collect()
    };
    let write = |list: Vec<(&str, String)>| {
        let pairs: Vec<(&str, &str)> = list.iter().map(|(n, u)| (*n, u.as_str())).collect();
        write_targets(&targets, &pairs);
    };
    write(listed(2, &servers));
    let env = [("T_HOOK_URL".to_owned(), format!("{}/hook", receiver.url))];
    let source = format!("file:{}", targets.display());
    let args = ["monitor", "--headless", "--discover", &source, "--metrics-listen", "127.0.0.1:0"];
    let (mut monitor, mut lines, _errors) = common::spawn_capwatch(&args, &config, &env);
    let metrics_line = lines.wait_for("📈 Dashboard metrics at ");
    let metrics_url = metrics_line[metrics_line.find("http://").unwrap()..].trim().to_owned();

    // Two listed: both join and are tested.
    lines.wait_for_all(&["➕ replica-a joined", "➕ replica-b joined", "[replica-a] ✅ Test", "[replica-b] ✅ Test"]);
    // Four: the two new ones join as soon as the file changes.
    write(listed(4, &servers));
    lines.wait_for_all(&["➕ replica-c joined", "➕ replica-d joined", "[replica-c] ✅ Test", "[replica-d] ✅ Test"]);
    let instances = |text: &str| {
        common::parse_openmetrics(text)
            .into_iter()
            .find(|(name, _, _)| name == "capwatch_monitor_instances")
            .map(|(_, _, value)| value)
    };
    let exposition = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(instances(&exposition), Some(4.0), "{exposition}");

    // A scale-down to one: replica-b is stopped first and fails its probes while still
    // listed; then the list loses b, c and d. No alert for any of them.
    drop(servers.remove(1));
    // Which of its probes fails first (health or caption) is open; the first alert it would
    // raise is held, and discovery asked to look again.
    lines.wait_for("[replica-b] ⏳ ");
    write(vec![(names[0], url(0, &servers))]);
    lines.wait_for_all(&["➖ replica-b left", "➖ replica-c left", "➖ replica-d left", "[replica-b] ⏳ Not raised: "]);
    let exposition = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(instances(&exposition), Some(1.0), "{exposition}");
    assert!(!exposition.contains(r#"capwatch_monitor_server_up{target="replica-b"}"#), "{exposition}");

    // The one left, still listed, dies: that is an incident.
    drop(servers.remove(0));
    lines.wait_for("[replica-a] 🚨");
    common::signal(monitor.id(), nix::sys::signal::Signal::SIGINT);
    let status = tokio::task::spawn_blocking(move || monitor.wait().unwrap()).await.unwrap();
    let stdout = lines.rest().join("\n");
    assert!(status.code().is_some(), "{stdout}");

    let logs = dir.join("logs");
    let records = common::read_records(&logs);
    common::assert_schema(&records);
    let fleet: Vec<(String, String, u64)> = records_of(&records, "fleet")
        .iter()
        .map(|r| {
            (
                r["change"].as_str().unwrap().to_owned(),
                r["instance"].as_str().unwrap().to_owned(),
                r["instances"].as_u64().unwrap(),
            )
        })
        .collect();
    let joined: Vec<u64> = fleet.iter().filter(|(c, _, _)| c == "joined").map(|(_, _, n)| *n).collect();
    assert_eq!(joined, [1, 2, 3, 4], "{fleet:?}");
    let left: Vec<&str> = fleet.iter().filter(|(c, _, _)| c == "left").map(|(_, i, _)| i.as_str()).collect();
    let mut left_sorted = left.clone();
    left_sorted.sort_unstable();
    assert_eq!(left_sorted, ["replica-b", "replica-c", "replica-d"], "{fleet:?}");
    assert_eq!(fleet.last().unwrap().2, 1);
    // Alerts: only replica-a's (and its resolve-as-left never happened: it was still listed).
    let alerted: Vec<&str> = records_of(&records, "alert").iter().map(|r| r["instance"].as_str().unwrap()).collect();
    assert!(!alerted.is_empty() && alerted.iter().all(|i| *i == "replica-a"), "{alerted:?}\n{stdout}");

    // Notifications: only about replica-a.
    let mut notified = Vec::new();
    for _ in 0..50 {
        notified = receiver.requests("/hook");
        if !notified.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!notified.is_empty(), "no notification arrived");
    assert!(
        notified.iter().all(|r| r.body["instance"] == "replica-a"),
        "{:?}",
        notified.iter().map(|r| &r.body).collect::<Vec<_>>()
    );

    // The summary: the fleet's size over time, and who left.
    let summary = common::session_summary(&logs);
    let fleet = &summary["fleet"];
    assert_eq!((fleet["joined"].as_u64(), fleet["left"].as_u64()), (Some(4), Some(3)), "{summary}");
    assert_eq!((fleet["max_instances"].as_u64(), fleet["final_instances"].as_u64()), (Some(4), Some(1)));
    let gone: Vec<&str> = summary["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["left"] == true)
        .map(|i| i["instance"].as_str().unwrap())
        .collect();
    assert_eq!(gone.len(), 3, "{summary}");
    let (ok, report) = common::capwatch_report(&logs);
    assert!(ok && report.contains("## Fleet") && report.contains("replica-c (left)"), "{report}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A DNS server for `replicas.capwatch.test.` whose A records the test changes.
struct TestDns {
    address: std::net::SocketAddr,
    zone:
        Arc<hickory_server::store::in_memory::InMemoryZoneHandler<hickory_server::net::runtime::TokioRuntimeProvider>>,
    _server: hickory_server::Server<hickory_server::zone_handler::Catalog>,
}

impl TestDns {
    const NAME: &str = "replicas.capwatch.test.";

    async fn start(addresses: &[Ipv4Addr]) -> Self {
        use hickory_server::proto::rr::rdata::SOA;
        use hickory_server::proto::rr::{LowerName, Name, RData, Record};
        use hickory_server::store::in_memory::InMemoryZoneHandler;
        use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
        let origin = Name::from_ascii("capwatch.test.").unwrap();
        let mut zone = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_ascii("ns.capwatch.test.").unwrap(),
            Name::from_ascii("hostmaster.capwatch.test.").unwrap(),
            1,
            3600,
            600,
            86400,
            0,
        );
        zone.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1);
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = zone.clone();
        catalog.upsert(LowerName::from(&origin), vec![handler]);
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap();
        let mut server = hickory_server::Server::new(catalog);
        server.register_socket(socket);
        let dns = Self { address, zone, _server: server };
        dns.set(addresses).await;
        dns
    }

    async fn set(&self, addresses: &[Ipv4Addr]) {
        use hickory_server::proto::rr::rdata::A;
        use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
        let name = Name::from_ascii(Self::NAME).unwrap();
        let key = RrKey::new(LowerName::from(&name), RecordType::A);
        let mut records = self.zone.records_mut().await;
        if addresses.is_empty() {
            records.remove(&key);
            return;
        }
        let mut set = RecordSet::with_ttl(name.clone(), RecordType::A, 0);
        for address in addresses {
            set.insert(Record::from_rdata(name.clone(), 0, RData::A(A(*address))), 0);
        }
        records.insert(key, Arc::new(set));
    }
}

/// A port free on every one of these loopback addresses (as far as one can tell).
fn free_port_on(addresses: &[Ipv4Addr]) -> u16 {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind((addresses[0], 0)).unwrap().local_addr().unwrap().port();
        if addresses.iter().all(|address| std::net::TcpListener::bind((*address, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on {addresses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_follows_the_a_records_of_a_name() {
    let _machine = common::whole_machine();
    let addresses = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4)];
    let port = free_port_on(&addresses);
    let port_text = port.to_string();
    let servers: Vec<Server> = addresses
        .iter()
        .map(|address| {
            let host = address.to_string();
            ready(common::spawn_server(&repo_path("models/default"), &["--host", &host, "--port", &port_text]))
        })
        .collect();
    assert_eq!(servers[0].1, format!("http://127.0.0.2:{port}"));
    let dns = TestDns::start(&addresses[..2]).await;
    let nameserver = "    # nameserver: 10.96.0.10:53 ";
    let ours = format!("    nameserver: {} ", dns.address);
    let mut replacements = FAST.to_vec();
    replacements.push((nameserver, ours.as_str()));
    let (dir, config) = common::monitor_config("discovery-dns", &replacements);
    let source = format!("dns:{}:{port}", TestDns::NAME.trim_end_matches('.'));
    let env = [("T_HOOK_URL".to_owned(), "http://127.0.0.1:9/hook".to_owned())];
    let (mut monitor, mut lines, _errors) =
        common::spawn_capwatch(&["monitor", "--headless", "--discover", &source], &config, &env);
    let a = format!("127.0.0.2:{port}");
    let b = format!("127.0.0.3:{port}");
    let c = format!("127.0.0.4:{port}");
    lines.wait_for_all(&[
        &format!("➕ {a} joined"),
        &format!("➕ {b} joined"),
        &format!("[{a}] ✅ Test"),
        &format!("[{b}] ✅ Test"),
    ]);
    // The name now answers 127.0.0.2 and 127.0.0.4.
    dns.set(&[addresses[0], addresses[2]]).await;
    lines.wait_for_all(&[&format!("➖ {b} left"), &format!("➕ {c} joined"), &format!("[{c}] ✅ Test")]);
    // The name stops resolving: one warning, and the last list stands.
    dns.set(&[]).await;
    lines.wait_for("⚠ Discovery (dns:replicas.capwatch.test:");
    lines.wait_for(&format!("[{c}] ✅ Test"));
    common::signal(monitor.id(), nix::sys::signal::Signal::SIGINT);
    let status = tokio::task::spawn_blocking(move || monitor.wait().unwrap()).await.unwrap();
    let stdout = lines.rest().join("\n");
    assert_eq!(status.code(), Some(0), "no alert fired: {stdout}");
    assert_eq!(stdout.matches("⚠ Discovery").count(), 1, "{stdout}");
    let records = common::read_records(&dir.join("logs"));
    common::assert_schema(&records);
    assert!(records_of(&records, "alert").is_empty(), "{stdout}");
    assert_eq!(records_of(&records, "fleet").len(), 4);
    drop(servers);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sd_lists_the_instances_and_an_endpoint_that_fails_keeps_the_last_list() {
    let (_server, url, _lines) = server();
    // The http_sd endpoint: answers what the test sets (None: 503).
    let answer: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(Some(format!(
        r#"[{{"targets": ["{}"], "labels": {{"name": "only"}}}}]"#,
        url.trim_start_matches("http://")
    ))));
    let shared = Arc::clone(&answer);
    let app = axum::Router::new().route(
        "/targets",
        axum::routing::get(move || {
            let shared = Arc::clone(&shared);
            async move {
                match shared.lock().unwrap().clone() {
                    Some(body) => (axum::http::StatusCode::OK, body),
                    None => (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sd_url = format!("http://{}/targets", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (dir, config) = common::monitor_config("discovery-http", &FAST);
    let env = [("T_HOOK_URL".to_owned(), "http://127.0.0.1:9/hook".to_owned())];
    let (mut monitor, mut lines, _errors) =
        common::spawn_capwatch(&["monitor", "--headless", "--discover", &sd_url], &config, &env);
    lines.wait_for_all(&["➕ only joined", "[only] ✅ Test"]);
    *answer.lock().unwrap() = None;
    lines.wait_for("failed: answered 503 Service Unavailable, expected 200; still watching the 1 instance(s)");
    lines.wait_for("[only] ✅ Test");
    *answer.lock().unwrap() = Some("[]".to_owned());
    lines.wait_for_all(&["answers again", "➖ only left"]);
    common::signal(monitor.id(), nix::sys::signal::Signal::SIGINT);
    let status = tokio::task::spawn_blocking(move || monitor.wait().unwrap()).await.unwrap();
    let stdout = lines.rest().join("\n");
    assert_eq!(status.code(), Some(0), "{stdout}");
    let records = common::read_records(&dir.join("logs"));
    let changes: Vec<&str> = records_of(&records, "fleet").iter().map(|r| r["change"].as_str().unwrap()).collect();
    assert_eq!(changes, ["joined", "left"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// A source that cannot work is refused before anything starts, naming the key.
#[test]
fn a_bad_discovery_source_is_refused_with_the_reason() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["monitor", "--headless", "--discover", "consul:replicas", "--config"])
        .arg(repo_path("config/monitoring_config.yaml"))
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown discovery source \"consul:replicas\""), "{stderr}");
}
