//! Command-line interface: subcommands and flags, parsed with clap.
//!
//! Flags override the config file; the config file overrides built-in defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "capwatch", version, about = "Serve an ONNX image-captioning model and watch it live")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the captioning model over HTTP (no dashboard).
    Serve(ServeArgs),
}

/// Flags shared by everything that starts the server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Config file (YAML).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Model directory (overrides `service.model_dir`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to bind (overrides `service.host`).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind, 0 for any free port (overrides `service.port`).
    #[arg(long)]
    pub port: Option<u16>,
    /// Worker threads (overrides `service.workers`).
    #[arg(long)]
    pub workers: Option<std::num::NonZeroUsize>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The config file with the flags applied. A missing default config file means defaults;
    /// a missing file given explicitly is an error.
    pub fn resolve_config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = if self.config == std::path::Path::new(DEFAULT_CONFIG_PATH) && !self.config.exists() {
            Config::default()
        } else {
            Config::load(&self.config)?
        };
        let service = &mut config.service;
        if let Some(model) = &self.model {
            service.model_dir.clone_from(model);
        }
        if let Some(host) = &self.host {
            service.host.clone_from(host);
        }
        if let Some(port) = self.port {
            service.port = port;
        }
        if let Some(workers) = self.workers {
            service.workers = workers;
        }
        Ok(config)
    }
}
