//! `capwatch export prometheus-rules|grafana-dashboard|kubernetes`: files for an existing
//! monitoring stack or cluster, derived from the config (and, for Kubernetes, from the model
//! loaded and measured here).

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{CliError, load_config, write_or_print};
use crate::cli::{ExportArgs, KubernetesArgs};
use crate::export::{grafana, kubernetes, measure, prometheus_rules};

/// Alerting rules equivalent to the configured thresholds.
pub fn prometheus_rules(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let config = load_config(&args.config)?;
    let text = prometheus_rules::render(&config, &args.config.display().to_string())
        .map_err(|err| CliError::Failed(format!("cannot write the rules as YAML: {err}")))?;
    write_or_print(args.output.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
}

/// A Grafana dashboard with the terminal dashboard's panes.
pub fn grafana_dashboard(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let config = load_config(&args.config)?;
    let text = serde_json::to_string_pretty(&grafana::dashboard(&config))
        .map_err(|err| CliError::Failed(format!("cannot write the dashboard as JSON: {err}")))?;
    write_or_print(args.output.as_deref(), &(text + "\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// Loads the configured models here as `capwatch serve` would, measures them, and writes the
/// objects sized from that (stdout, or one file each in `-o DIR`).
pub fn kubernetes(args: &KubernetesArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let mut config = load_config(&args.config)?;
    let target = kubernetes::Target {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        image: args.image.clone().unwrap_or_else(|| format!("capwatch:{}", env!("CARGO_PKG_VERSION"))),
        min_replicas: args.min_replicas,
        max_replicas: args.max_replicas,
    };
    target.check().map_err(|err| CliError::Usage(err.to_string()))?;
    // The ConfigMap holds the file as it is; a missing default config means the defaults.
    let config_text = if args.config.exists() {
        std::fs::read_to_string(&args.config)
            .map_err(|err| CliError::Usage(format!("cannot read {}: {err}", args.config.display())))?
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
    let measured = measure::measure(&config.service, &test_images, runtime.handle())
        .map_err(|err| CliError::coded(err.exit_code(), err))?;
    eprintln!("{measured}");
    eprintln!("{}", kubernetes::sizing(&config, &measured));
    let failed = |err: kubernetes::KubernetesError| CliError::Failed(err.to_string());
    let manifests = kubernetes::manifests(&config, &config_text, &target, &measured).map_err(failed)?;
    let source = args.config.display().to_string();
    let Some(dir) = &args.output else {
        print!("{}", kubernetes::multi_document(&manifests, &source).map_err(failed)?);
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).map_err(|err| CliError::Failed(format!("cannot create {}: {err}", dir.display())))?;
    for manifest in &manifests {
        let path = dir.join(manifest.file_name);
        let cannot_write =
            |err: &dyn std::fmt::Display| CliError::Failed(format!("cannot write {}: {err}", path.display()));
        let text = manifest.file_text(&source).map_err(|err| cannot_write(&err))?;
        std::fs::write(&path, text).map_err(|err| cannot_write(&err))?;
        eprintln!("wrote {} ({})", path.display(), manifest.title());
    }
    Ok(ExitCode::SUCCESS)
}
