//! `capwatch plan` against a real server (issue 15 part 4, under way): it reads the service
//! times the server measured from `/metrics` and plans replicas × workers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

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
