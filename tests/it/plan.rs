//! `capwatch plan` against a real server: it reads the service times the
//! server measured from `/metrics`, or those a past dashboard session recorded, and plans
//! replicas × workers.

use crate::common;

use common::{TestServer, capwatch_cli, repo_path};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_the_measured_service_times_and_plans_replicas() {
    let server = TestServer::start(repo_path("models/default"), |_| {}).await;
    let client = reqwest::Client::new();
    let image = std::fs::read(repo_path("test_images/a_small_yellow_square.png")).unwrap();
    for _ in 0..40 {
        let response = client
            .post(server.endpoint("/caption"))
            .header("content-type", "image/png")
            .body(image.clone())
            .send()
            .await;
        assert_eq!(response.unwrap().status(), 200);
    }
    let metrics = client.get(server.endpoint("/metrics")).send().await.unwrap().text().await.unwrap();
    let measured = capwatch::plan::scrape::measured(&metrics, 8);
    assert_eq!(measured.len(), 1, "{metrics}");
    assert_eq!((measured[0].workers, measured[0].count), (1, 40.0));
    let mean_s = measured[0].service.mean();
    assert!(mean_s > 0.0 && mean_s < 1.0, "{mean_s}");

    let args = |extra: &[&str]| -> Vec<String> {
        ["plan", "--url", server.url.as_str()].iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    // Two captions a second need one replica of one worker; 2,000 a second need several.
    let (code, stdout, stderr) = capwatch_cli(args(&["--rate", "2", "--p95-ms", "2000"])).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("model default, 1 workers, 40 captions"), "{stdout}");
    assert!(stdout.contains("| 2 | 1 × 1 |") && stdout.contains("Captions by batch size: 1: 40"), "{stdout}");
    let row = stdout.lines().find(|l| l.starts_with("| 2000 |")).unwrap();
    let replicas: usize = row.split('|').nth(2).unwrap().trim().split(' ').next().unwrap().parse().unwrap();
    assert!(replicas as f64 >= 2000.0 * mean_s, "{row} (mean service {mean_s} s)");

    // A target under the service time itself, and a model the server does not have.
    let (code, _, stderr) = capwatch_cli(args(&["--rate", "2", "--p95-ms", "0.001"])).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("below the measured P95 service time"), "{stderr}");
    let (code, _, stderr) = capwatch_cli(args(&["--rate", "2", "--p95-ms", "100", "--model", "nope"])).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no measured service times for model `nope`"), "{stderr}");
    server.stop().await.unwrap();
}

/// A dashboard session records the server's time on each probed caption (queue excluded)
/// and its workers; `plan --session` plans from them, and says they were one at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_a_past_dashboard_session() {
    let server = TestServer::start(repo_path("models/default"), |_| {}).await;
    let (dir, config) = common::monitor_config(
        "plan-session",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.2"),
            ("inference_interval_s: 10", "inference_interval_s: 0.2"),
            ("tests_per_cycle: 5 ", "tests_per_cycle: 4 "),
        ],
    );
    let monitor = ["monitor", "--url", server.url.as_str(), "--headless", "--cycles", "3", "--config"];
    let mut args: Vec<String> = monitor.iter().map(|s| (*s).to_owned()).collect();
    args.push(config.display().to_string());
    let (code, stdout, stderr) = capwatch_cli(args).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let session = dir.join("logs/service_metrics.jsonl");
    let records = common::read_records(&dir.join("logs"));
    common::assert_schema(&records);
    let cycles: Vec<_> = records.iter().filter(|r| r["type"] == "cycle").collect();
    assert!(cycles.iter().all(|c| c["service_ms"].as_array().unwrap().len() == 4 && c["workers"] == 1), "{cycles:?}");

    let plan = |extra: &[&str]| -> Vec<String> {
        ["plan", "--session", session.to_str().unwrap()].iter().chain(extra).map(|s| (*s).to_owned()).collect()
    };
    let (code, stdout, stderr) = capwatch_cli(plan(&["--rate", "2", "--p95-ms", "2000"])).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("one caption at a time"), "{stdout}");
    assert!(stdout.contains("1 workers, 12 captions") && stdout.contains("| 2 | 1 × 1 |"), "{stdout}");
    // A file without service times says why.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let args = vec![
        "plan".into(),
        "--session".into(),
        empty.display().to_string(),
        "--rate".into(),
        "1".into(),
        "--p95-ms".into(),
        "100".into(),
    ];
    let (code, _, stderr) = capwatch_cli(args).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("holds no service times"), "{stderr}");
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
