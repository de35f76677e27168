//! capwatch entry point: parses the command line, wires the parts together, and is the
//! only place that turns errors into exit codes (0 ok, 1 failure, 2 bad usage or config).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use capwatch::cli::{Cli, Command, DrillArgs, Export, ExportArgs, KubernetesArgs, MonitorArgs, RunArgs, ServeArgs};
use capwatch::config::Config;
use capwatch::dash::app::{self, StopAfter, Target, Watched};
use capwatch::dash::console::Mode;
use capwatch::dash::supervisor::ServeCommand;
use capwatch::{server, shutdown, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Monitor(args)) => monitor(&args),
        Some(Command::Report { file }) => report(&file),
        Some(Command::AlertTest { config }) => alert_test(&config),
        Some(Command::Drill(args)) => drill(&args),
        Some(Command::Export(Export::PrometheusRules(args))) => export(&args, ExportKind::PrometheusRules),
        Some(Command::Export(Export::GrafanaDashboard(args))) => export(&args, ExportKind::GrafanaDashboard),
        Some(Command::Export(Export::Kubernetes(args))) => export_kubernetes(&args),
        Some(Command::Drift(command)) => drift(&command),
        Some(Command::Plan(args)) => plan(&args),
        None => dashboard(&cli.run, &cli.serve),
    }
}

/// The config, or (after saying why) exit code 2 for a bad one.
fn config_or_exit(loaded: Result<Config, capwatch::config::ConfigError>) -> Result<Config, ExitCode> {
    loaded.map_err(|err| {
        eprintln!("error: {err}");
        ExitCode::from(2)
    })
}

#[derive(Clone, Copy)]
enum ExportKind {
    PrometheusRules,
    GrafanaDashboard,
}

/// `capwatch export …`: a file for Prometheus or Grafana, to stdout or `--output`.
fn export(args: &ExportArgs, kind: ExportKind) -> ExitCode {
    let config = match config_or_exit(Config::load_or_default(&args.config)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let text = match kind {
        ExportKind::PrometheusRules => {
            let source = args.config.display().to_string();
            match capwatch::export::prometheus_rules::render(&config, &source) {
                Ok(text) => text,
                Err(err) => {
                    eprintln!("error: cannot write the rules as YAML: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        ExportKind::GrafanaDashboard => {
            let dashboard = capwatch::export::grafana::dashboard(&config);
            match serde_json::to_string_pretty(&dashboard) {
                Ok(text) => text + "\n",
                Err(err) => {
                    eprintln!("error: cannot write the dashboard as JSON: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match &args.output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: cannot write {}: {err}", path.display());
                ExitCode::FAILURE
            }
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

/// `capwatch export kubernetes`: loads the configured models here as `capwatch serve` would,
/// measures them, and writes the objects sized from that (stdout, or one file each in `-o DIR`).
fn export_kubernetes(args: &KubernetesArgs) -> ExitCode {
    use capwatch::export::kubernetes::{self, Target};
    use capwatch::export::measure;
    let mut config = match config_or_exit(Config::load_or_default(&args.config)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let target = Target {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        image: args.image.clone().unwrap_or_else(|| format!("capwatch:{}", env!("CARGO_PKG_VERSION"))),
        min_replicas: args.min_replicas,
        max_replicas: args.max_replicas,
    };
    if let Err(err) = target.check() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    // The ConfigMap holds the file as it is; a missing default config means the defaults.
    let config_text = if args.config.exists() {
        match std::fs::read_to_string(&args.config) {
            Ok(text) => text,
            Err(err) => {
                eprintln!("error: cannot read {}: {err}", args.config.display());
                return ExitCode::from(2);
            }
        }
    } else {
        String::new()
    };
    if let Some(workers) = args.workers {
        config.service.workers = Some(workers);
    }
    if let Some(threads) = args.intra_op_threads {
        config.service.intra_op_threads = Some(threads);
    }
    for variant in config.service.variants().unwrap_or_default() {
        if variant.dir.is_absolute() {
            eprintln!(
                "warning: model `{}` is at the absolute path {}: the image must have it there too",
                variant.name,
                variant.dir.display()
            );
        }
    }
    eprintln!("Loading the model(s) as `capwatch serve` does, to size the pods…");
    let test_images: Vec<std::path::PathBuf> = config.quality.test_images.iter().map(|t| t.file.clone()).collect();
    let measured = match measure::measure(&config.service, &test_images) {
        Ok(measured) => measured,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    let size = kubernetes::sizing(&config, &measured);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "Measured on this machine ({} cores): {} model(s) loaded and warmed up in {:.3} s; RSS {:.1} MiB before, \
         {:.1} MiB loaded, {:.1} MiB after {} captions, peak {:.1} MiB; {} workers x {} intra-op threads",
        measured.cores,
        measured.models,
        measured.load.as_secs_f64(),
        mib(measured.rss_before_bytes),
        mib(measured.rss_loaded_bytes),
        mib(measured.rss_captioned_bytes),
        measured.captions,
        mib(measured.peak_rss_bytes),
        measured.workers,
        measured.intra_op_threads
    );
    eprintln!(
        "Sizing: memory request {}Mi (peak x {}), limit {}Mi (x {}); CPU request {} (no limit); startup probe {} x {} s = {} s; \
         termination grace {} s",
        size.memory_request_mib,
        kubernetes::MEMORY_REQUEST_FACTOR,
        size.memory_limit_mib,
        kubernetes::MEMORY_LIMIT_FACTOR,
        size.cpu_cores,
        size.startup_failure_threshold,
        size.startup_period_s,
        size.startup_budget_s(),
        size.termination_grace_s
    );
    let manifests = match kubernetes::manifests(&config, &config_text, &target, &measured) {
        Ok(manifests) => manifests,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let Some(dir) = &args.output else {
        return match kubernetes::multi_document(&manifests, &args.config.display().to_string()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    };
    if let Err(err) = std::fs::create_dir_all(dir) {
        eprintln!("error: cannot create {}: {err}", dir.display());
        return ExitCode::FAILURE;
    }
    for manifest in &manifests {
        let path = dir.join(manifest.file_name);
        let written = manifest.to_yaml().map_err(|e| e.to_string()).and_then(|text| {
            let header = format!(
                "# Generated by `capwatch export kubernetes` (capwatch {}) from {}.\n",
                env!("CARGO_PKG_VERSION"),
                args.config.display()
            );
            std::fs::write(&path, header + &text).map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => eprintln!("wrote {} ({})", path.display(), manifest.title()),
            Err(err) => {
                eprintln!("error: cannot write {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `capwatch alert-test`: one test notification to every configured sink, and what each said.
fn alert_test(config_path: &std::path::Path) -> ExitCode {
    use capwatch::notify::{self, DeliveryOutcome, Sink};
    let config = match config_or_exit(Config::load_or_default(config_path)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let sinks = match Sink::resolve_all(&config.alerts.sinks.0, &|var| std::env::var(var).ok()) {
        Ok(sinks) => sinks,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if sinks.is_empty() {
        eprintln!("error: no alert sinks are configured (alerts.sinks in {})", config_path.display());
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let delivery = &config.alerts.delivery;
    println!(
        "Sending a test notification to {} sink(s) (timeout {:.1} s, up to {} attempts each)…",
        sinks.len(),
        delivery.timeout_s.0.as_secs_f64(),
        delivery.max_attempts
    );
    let outcomes = match runtime.block_on(notify::send_test(&sinks, &config.alerts, &config.service.model_name())) {
        Ok(outcomes) => outcomes,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    let mut failed = 0;
    for (sink, outcome) in sinks.iter().zip(&outcomes) {
        let kind = sink.kind.name();
        match outcome {
            DeliveryOutcome::Delivered { attempts, status, elapsed } => println!(
                "  ✅ {} ({kind}): delivered, HTTP {status} in {:.0} ms ({attempts} attempt(s))",
                sink.name,
                elapsed.as_secs_f64() * 1000.0
            ),
            DeliveryOutcome::Failed { attempts, error, .. } => {
                failed += 1;
                println!("  ❌ {} ({kind}): failed after {attempts} attempt(s): {error}", sink.name);
            }
            DeliveryOutcome::Dropped { .. } => {
                failed += 1;
                println!("  ❌ {} ({kind}): dropped", sink.name);
            }
        }
    }
    if failed == 0 {
        println!("All {} sink(s) took the test notification.", sinks.len());
        ExitCode::SUCCESS
    } else {
        println!("{failed} of {} sink(s) failed.", sinks.len());
        ExitCode::FAILURE
    }
}

/// This executable, to launch `capwatch serve` as the child (or, after saying why, exit code 1).
fn own_executable() -> Result<std::path::PathBuf, ExitCode> {
    std::env::current_exe().map_err(|err| {
        eprintln!("error: cannot find the capwatch executable to launch the server: {err}");
        ExitCode::FAILURE
    })
}

/// The monitor's log file (`tui`: no console logging) and the runtime a session runs on.
fn monitor_runtime(config: &Config, tui: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    if let Err(err) = telemetry::init_monitor(&config.logs.dir, &config.logs.log_file, tui) {
        eprintln!("error: {err}");
        return Err(ExitCode::FAILURE);
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|err| {
        eprintln!("error: cannot start the async runtime: {err}");
        ExitCode::FAILURE
    })
}

/// `capwatch drift baseline|status|traffic --url URL`.
fn drift(command: &capwatch::cli::DriftCommand) -> ExitCode {
    use capwatch::cli::DriftCommand;
    use capwatch::server::drift::{DriftStatus, ReferenceInfo};
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let client = reqwest::Client::new();
    let base = |url: &str| url.trim_end_matches('/').to_owned();
    match command {
        DriftCommand::Traffic(args) => runtime.block_on(drift_traffic(args)),
        DriftCommand::Baseline { url } => {
            let body = match runtime.block_on(http_call(client.post(format!("{}/drift/baseline", base(url))), url)) {
                Ok(body) => body,
                Err(code) => return code,
            };
            match serde_json::from_str::<ReferenceInfo>(&body) {
                Ok(info) => {
                    let saved = info.path.map_or_else(
                        || " (not saved: service.drift.reference is not set)".to_owned(),
                        |p| format!(", saved to {p}"),
                    );
                    println!("Froze a drift reference of {} requests at {}{saved}", info.size, info.created_at);
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: unexpected answer from {url}: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        DriftCommand::Status { url } => {
            let body = match runtime.block_on(http_call(client.get(format!("{}/drift", base(url))), url)) {
                Ok(body) => body,
                Err(code) => return code,
            };
            match serde_json::from_str::<DriftStatus>(&body) {
                Ok(drift) => {
                    print!("{}", drift.table());
                    match &drift.report {
                        None => ExitCode::from(2),
                        Some(report) if report.detected => ExitCode::FAILURE,
                        Some(_) => ExitCode::SUCCESS,
                    }
                }
                Err(err) => {
                    eprintln!("error: unexpected answer from {url}: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Sends one request (drift, plan); the body of a 2xx answer, else the error printed and exit code 1.
async fn http_call(request: reqwest::RequestBuilder, url: &str) -> Result<String, ExitCode> {
    let answer = async {
        let response = request.timeout(std::time::Duration::from_secs(30)).send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    };
    let (status, body) = answer.await.map_err(|err| {
        eprintln!("error: cannot reach {url}: {err}");
        ExitCode::FAILURE
    })?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        eprintln!("error: {url} answered {status}: {message}");
        return Err(ExitCode::FAILURE);
    }
    Ok(body)
}

/// `capwatch plan`: the measured service times, then replicas × workers for the rate and
/// 10×, 100×, 1000× it.
fn plan(args: &capwatch::cli::PlanArgs) -> ExitCode {
    use capwatch::plan::scrape;
    if !(args.rate > 0.0 && args.rate.is_finite() && args.p95_ms > 0.0 && args.p95_ms.is_finite()) {
        eprintln!("error: --rate and --p95-ms must be positive numbers");
        return ExitCode::from(2);
    }
    let (source, exposition) = match (&args.session, &args.metrics) {
        (Some(path), _) => return plan_from_session(args, path),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => (path.display().to_string(), text),
            Err(err) => {
                eprintln!("error: cannot read {}: {err}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            let url = format!("{}/metrics", args.url.trim_end_matches('/'));
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("error: cannot start the async runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(http_call(reqwest::Client::new().get(&url), &url)) {
                Ok(text) => (url, text),
                Err(code) => return code,
            }
        }
    };
    let models = scrape::measured(&exposition, args.max_batch);
    let chosen = match &args.model {
        Some(name) => models.iter().find(|m| &m.model == name),
        None => models.iter().max_by(|a, b| a.count.total_cmp(&b.count)),
    };
    let Some(measured) = chosen else {
        let names: Vec<&str> = models.iter().map(|m| m.model.as_str()).collect();
        eprintln!(
            "error: {source} has no measured service times{} (the server records them once it has captioned; names: {names:?})",
            args.model.as_ref().map_or_else(String::new, |m| format!(" for model `{m}`"))
        );
        return ExitCode::FAILURE;
    };
    print_plan(args, &source, measured)
}

/// `capwatch plan --session FILE`: the plan from a past dashboard session's service times.
fn plan_from_session(args: &capwatch::cli::PlanArgs, path: &std::path::Path) -> ExitCode {
    let records = match capwatch::dash::records_file::RecordsFile::read(path) {
        Ok((records, _)) => records,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match capwatch::plan::session::measured(&records, args.instance.as_deref()) {
        Ok(measured) => {
            println!(
                "Note: a session's times are one caption at a time (the probes never overlap): this plan cannot count \
                 on batching and does not see the CPU a loaded server shares. The server's /metrics under load is the \
                 better input (README, Capacity planning)."
            );
            print_plan(args, &path.display().to_string(), &measured)
        }
        Err(err) => {
            eprintln!("error: cannot plan from {}: {err}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Prints what was measured and the plan for the rate and its multiples; exit 1 when a
/// level cannot be planned.
fn print_plan(args: &capwatch::cli::PlanArgs, source: &str, measured: &capwatch::plan::scrape::Measured) -> ExitCode {
    use capwatch::plan;
    let workers = args.workers.unwrap_or(measured.workers).max(1);
    let service = &measured.service;
    println!(
        "Measured at {source}: model {}, {} workers, {} captions; service time mean {:.1} ms, P50 {:.1} ms, P95 {:.1} ms, P99 {:.1} ms",
        measured.model,
        measured.workers,
        measured.count,
        service.mean() * 1e3,
        service.quantile(0.5) * 1e3,
        service.quantile(0.95) * 1e3,
        service.quantile(0.99) * 1e3
    );
    let classes: Vec<String> = measured.per_class.iter().map(|(label, n)| format!("{label}: {n}")).collect();
    println!("Captions by batch size: {}", classes.join(", "));
    println!(
        "Plan for P95 ≤ {} ms, {workers} workers per replica batching up to {}, each replica its own queue (simulated, {} requests each):\n",
        args.p95_ms,
        args.max_batch,
        plan::SIMULATED_REQUESTS
    );
    if let Err(err @ plan::PlanError::TargetBelowServiceTime { .. }) =
        plan::plan(&measured.batched, workers, args.rate, args.p95_ms / 1e3, args.max_replicas)
    {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    println!("| rate (req/s) | replicas × workers | P50 | P95 | P99 | utilisation | batch | M/M/c P95 |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for multiple in [1.0, 10.0, 100.0, 1000.0] {
        let rate = args.rate * multiple;
        match plan::plan(&measured.batched, workers, rate, args.p95_ms / 1e3, args.max_replicas) {
            Ok(p) => println!(
                "| {rate} | {} × {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} % | {:.1} | {} |",
                p.replicas,
                p.workers_per_replica,
                p.p50_s * 1e3,
                p.p95_s * 1e3,
                p.p99_s * 1e3,
                p.utilisation * 100.0,
                p.mean_batch,
                p.mmc_p95_s.map_or_else(|| "-".to_owned(), |s| format!("{:.1} ms", s * 1e3))
            ),
            Err(err) => {
                println!("| {rate} | {err} | | | | | | |");
                failed = true;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// `capwatch drift traffic`: scenes to a local server, with a line per drift check.
async fn drift_traffic(args: &capwatch::cli::TrafficArgs) -> ExitCode {
    use capwatch::cli::ExpectDrift;
    use capwatch::drift::traffic::{self, TrafficError, TrafficPlan};
    let plan = TrafficPlan {
        url: args.url.clone(),
        shift: args.shift,
        requests: args.requests,
        concurrency: args.concurrency,
        seed: args.seed,
        check_every: Some(if args.check_every == 0 { args.requests } else { args.check_every }),
    };
    println!("Sending {} {} scenes to {} ({} at a time)", plan.requests, plan.shift.name(), plan.url, plan.concurrency);
    let outcome = traffic::send(&plan, |check| match check.detected {
        None => println!("{:>7} sent: no reference yet", check.after),
        Some(detected) => println!(
            "{:>7} sent: {} ({} of {} features{}{})",
            check.after,
            if detected { "DRIFT" } else { "no drift" },
            check.drifted.len(),
            check.features,
            if check.drifted.is_empty() { "" } else { ": " },
            check.drifted.join(", ")
        ),
    })
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(
            err @ (TrafficError::BadUrl(..)
            | TrafficError::NotLoopback(_)
            | TrafficError::TooMany(_)
            | TrafficError::Concurrency(_)),
        ) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{} {} scenes sent: {} answered, {} failed; {}",
        outcome.sent,
        outcome.shift.name(),
        outcome.answered,
        outcome.failed,
        outcome.first_detected_after.map_or_else(
            || "no check found drift".to_owned(),
            |after| format!("drift first detected after {after} requests")
        )
    );
    let last = outcome.checks.last().and_then(|c| c.detected);
    let expected = match args.expect {
        None => true,
        Some(ExpectDrift::Drift) => last == Some(true),
        Some(ExpectDrift::None) => outcome.checks.iter().all(|c| c.detected == Some(false)),
    };
    if !expected {
        eprintln!(
            "error: expected {:?}, but the last check said {}",
            args.expect,
            match last {
                None => "there is no reference",
                Some(true) => "drift",
                Some(false) => "no drift",
            }
        );
    }
    if outcome.failed == 0 && expected { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `capwatch`: launch the server as a child and monitor it.
fn dashboard(run: &RunArgs, serve: &ServeArgs) -> ExitCode {
    let config = match config_or_exit(serve.resolve_config()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let program = match own_executable() {
        Ok(program) => program,
        Err(code) => return code,
    };
    let preflight = Some(capwatch::dash::preflight::Preflight::new(&config.service));
    let target = Target::Child(ServeCommand { program, args: serve.child_args(&config), preflight });
    run_monitor(run, config, target)
}

/// `capwatch drill`: rehearse every alert against a chaos-enabled child server.
fn drill(args: &DrillArgs) -> ExitCode {
    use capwatch::dash::drill::{self, Conductor, DrillReport};
    let base = match config_or_exit(args.serve.resolve_config()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let faults = if args.faults.is_empty() { drill::ALL_FAULTS.to_vec() } else { args.faults.clone() };
    let plan = drill::plan(&base, &faults);
    let program = match own_executable() {
        Ok(program) => program,
        Err(code) => return code,
    };
    let config = plan.config.clone();
    let runtime = match monitor_runtime(&config, false) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    // Every bound of every step, one after the other, and the server's start: past this
    // the drill stops and reports where it was.
    let t = &plan.timings;
    let limit = plan.steps.iter().fold(config.monitoring.startup_timeout_s.0, |total, step| {
        total
            + t.settle_within
            + step.fire_within
            + step.repeat_within.unwrap_or_default()
            + step.restart_within.unwrap_or_default()
            + step.resolve_within
            + t.notify_within
            + std::time::Duration::from_secs(10)
    });
    println!(
        "🧯 capwatch drill: {} fault(s) ({}); probes every {:.1} s, window {:.0} s, cooldown {:.0} s; at most {:.0} s. Logs in {}",
        plan.steps.len(),
        faults.iter().map(|kind| kind.name()).collect::<Vec<_>>().join(", "),
        t.interval.as_secs_f64(),
        t.window.as_secs_f64(),
        t.cooldown.as_secs_f64(),
        limit.as_secs_f64(),
        config.logs.dir.display()
    );
    let preflight = Some(capwatch::dash::preflight::Preflight::new(&config.service));
    let mut serve = args.serve.clone();
    serve.chaos = true;
    let target = Target::Child(ServeCommand { program, args: serve.child_args(&config), preflight });
    let sinks = config.alerts.sinks.0.iter().map(|sink| sink.name.clone()).collect();
    let started = capwatch::clock::Clock::read();
    let outcome = runtime.block_on(async {
        let mut conductor =
            Conductor::new(plan.steps.clone(), plan.timings.clone(), sinks, tokio::time::Instant::now());
        let stop_after = StopAfter { cycles: None, duration: Some(limit) };
        let end =
            app::run_with(config, target, stop_after, shutdown::signal(), Mode::Headless, Some(&mut conductor)).await;
        end.map(|_| conductor.results())
    });
    let steps = match outcome {
        Ok(steps) => steps,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(err.exit_code());
        }
    };
    let elapsed = capwatch::clock::Clock::read().now.saturating_duration_since(started.now);
    let report = DrillReport::new(&plan.timings, steps, started.timestamp(), elapsed);
    let markdown = report.markdown();
    println!();
    print!("{markdown}");
    if let Some(path) = &args.report {
        // A `.json` report is the same data for machines (CI, dashboards).
        let text = if path.extension().is_some_and(|ext| ext == "json") {
            serde_json::to_string_pretty(&report)
                .map_or_else(|err| format!("{{\"error\": \"{err}\"}}"), |json| json + "\n")
        } else {
            markdown.clone()
        };
        match std::fs::write(path, text) {
            Ok(()) => println!("\nReport written to {}", path.display()),
            Err(err) => eprintln!("error: cannot write {}: {err}", path.display()),
        }
    }
    if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `capwatch report FILE.jsonl`: the summary of a past session. Lines that do not parse
/// (a file cut by a full disk, say) are skipped and counted.
fn report(file: &std::path::Path) -> ExitCode {
    let (records, skipped) = match capwatch::dash::records_file::RecordsFile::read(file) {
        Ok(read) => read,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match capwatch::dash::summary::SessionSummary::from_records(&records) {
        Some(summary) => {
            print!("{}", summary.markdown());
            if skipped > 0 {
                println!("\n({skipped} unreadable lines skipped)");
            }
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("error: {} has no test-cycle records to summarise", file.display());
            ExitCode::FAILURE
        }
    }
}

/// `capwatch monitor --url URL`: monitor a server that is already running.
fn monitor(args: &MonitorArgs) -> ExitCode {
    let mut config = match config_or_exit(Config::load_or_default(&args.config)) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(preset) = args.service_preset {
        config.monitoring.service.preset = preset;
    }
    if args.chaos {
        config.service.chaos = true;
    }
    let watched = match Watched::resolve(&args.url, &config.monitoring.targets) {
        Ok(watched) => watched,
        Err(why) => {
            eprintln!("error: {why}");
            return ExitCode::from(2);
        }
    };
    run_monitor(&args.run, config, Target::Urls(watched))
}

fn run_monitor(run: &RunArgs, mut config: Config, target: Target) -> ExitCode {
    if let Some(address) = &run.metrics_listen {
        config.prometheus.listen = Some(address.clone());
    }
    let mode = if run.headless { Mode::Headless } else { Mode::Tui };
    let runtime = match monitor_runtime(&config, mode == Mode::Tui) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let stop_after = StopAfter { cycles: run.cycles, duration: run.duration };
    let outcome = runtime.block_on(app::run(config, target, stop_after, shutdown::signal(), mode));
    match outcome {
        Ok(outcome) => {
            println!();
            print!("{}", outcome.summary.markdown());
            if let Some((json, markdown)) = &outcome.summary_paths {
                println!("\nSummary written to {} and {}", json.display(), markdown.display());
            }
            if let Some(wrong_shape) = &outcome.wrong_shape {
                eprintln!("error: {wrong_shape}");
            }
            ExitCode::from(outcome.exit_code())
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// `capwatch serve`. Its exit code tells the supervisor whether a restart can help
/// (`capwatch::exit_code`): 3 model, 4 ONNX Runtime, 5 address, 2 config, 1 anything else.
fn serve(args: &ServeArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let config = match config_or_exit(args.resolve_config()) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match run_server(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(serve_exit_code(&err))
        }
    }
}

/// The exit code of a server that stopped with `err`.
fn serve_exit_code(err: &anyhow::Error) -> u8 {
    use capwatch::engine::EngineError;
    use capwatch::exit_code;
    use capwatch::server::ServerError;
    if err.downcast_ref::<CannotListen>().is_some() {
        return exit_code::ADDRESS;
    }
    match err.downcast_ref::<ServerError>() {
        Some(ServerError::Engine(EngineError::ModelLoad { .. })) => exit_code::MODEL,
        Some(ServerError::Engine(EngineError::Runtime(_))) => exit_code::RUNTIME,
        Some(ServerError::Config { .. }) => exit_code::CONFIG,
        _ => exit_code::FAILURE,
    }
}

/// The listening socket could not be opened (in use, not permitted, no such address).
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source}")]
struct CannotListen {
    address: String,
    source: std::io::Error,
}

fn run_server(config: capwatch::config::Config) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let service = config.service;
        let address = format!("{}:{}", service.host, service.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| CannotListen { address: address.clone(), source })?;
        let local = listener.local_addr().context("listener has no address")?;
        tracing::info!(
            url = %format!("http://{local}"),
            model_dir = %service.model_dir.display(),
            "capwatch serve listening (docs at /docs)"
        );
        let stop = async {
            let signal = shutdown::signal().await;
            tracing::info!(signal, "stopping");
        };
        server::run(service, listener, stop).await?;
        tracing::info!("server stopped cleanly");
        Ok(())
    })
}
