//! Schemathesis (from the test venv) against the real `capwatch serve` on the bundled model:
//! every check, a fixed seed, up to 100 generated cases per operation, `tools/schemathesis.toml`
//! — zero findings, so every request `/openapi.json` allows is one the server handles as it
//! says, and every answer matches the document.

use crate::common;

use common::repo_path;

#[tokio::test]
async fn schemathesis_finds_nothing_in_the_served_document() {
    let (_server, url, _lines) = common::spawn_server(&repo_path("models/default"), &[]);
    let ready_url = url.clone();
    tokio::task::spawn_blocking(move || common::wait_ready(&ready_url)).await.unwrap();
    let output = tokio::task::spawn_blocking(move || {
        common::python()
            .args(["-m", "schemathesis.cli", "--no-color", "--config-file"])
            .arg(repo_path("tools/schemathesis.toml"))
            .args(["run", &format!("{url}/openapi.json"), "--checks", "all", "--workers", "1"])
            .output()
            .expect("python3 must be installed")
    })
    .await
    .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        !report.contains("No module named"),
        "schemathesis is not installed (run `make setup` to install the test tools):\n{report}"
    );
    assert!(output.status.success(), "schemathesis found something:\n{report}");
    assert!(report.contains("7 selected / 7 total") && report.contains("passed"), "{report}");
}
