//! The HTTP server: `run(config, listener, shutdown)` serves the API until `shutdown`
//! resolves, then drains in-flight requests and stops the engine.
//!
//! Layout: [`routes`] (handlers, router), [`error`] (status codes), [`metrics`] (Prometheus),
//! [`chaos`] (fault injection, only with `--chaos`), [`variants`] (several models and which
//! one answers), [`shadow`] (copies of requests for a shadow model), [`drift`] (the live
//! window of request profiles and the reference it is compared with).
//! The models load in the background after the socket is bound, so `/health` and `/ready`
//! answer from the first moment; a model that fails to load stops the server with an error.

pub mod auth;
pub mod chaos;
mod control;
pub mod drift;
pub mod error;
mod limits;
mod listen;
pub mod metrics;
pub mod routes;
pub mod shadow;
pub mod variants;

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServiceConfig;
use crate::engine::{Engine, EngineError, EngineOptions, ModelSpec, StepDelay};

pub use routes::router;

/// How long the engine may take to finish queued work after the HTTP server stopped.
const ENGINE_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid config at key `{key}`: {message}")]
    Config { key: &'static str, message: String },
}

impl ServerError {
    /// The exit code of a server that stopped with this error (`crate::exit_code`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Engine(err) => err.exit_code(),
            Self::Config { .. } => crate::exit_code::CONFIG,
            Self::Io(_) => crate::exit_code::FAILURE,
        }
    }
}

/// Shared state of all handlers.
pub struct AppState {
    pub config: ServiceConfig,
    /// The models served (one unless `service.models` names several).
    pub variants: variants::Variants,
    /// Copies of routed requests for `service.shadow`.
    pub shadow: Option<shadow::Shadow>,
    /// Profiles of real requests and the drift reference.
    pub drift: drift::DriftState,
    pub started_at: Instant,
    pub metrics: metrics::Metrics,
    /// Fault injection, when the server was started with `--chaos`.
    pub chaos: Option<chaos::Chaos>,
    /// The engine's step delay (set by the `slow_decoder` fault).
    pub step_delay: StepDelay,
    /// The API keys protected routes require (`service.auth`); `None`: open.
    pub api_keys: Option<auth::ApiKeys>,
}

impl AppState {
    /// The state for `config`; fails when its models do not fit together.
    pub fn new(config: ServiceConfig) -> Result<Self, ServerError> {
        let routes = config.variants().map_err(|(key, message)| ServerError::Config { key, message })?;
        let step_delay = StepDelay::default();
        let chaos = config.chaos.then(|| chaos::Chaos::new(step_delay.clone()));
        let shadow = config.shadow.as_ref().map(shadow::Shadow::new);
        let drift = drift::DriftState::new(&config.drift)
            .map_err(|err| ServerError::Config { key: "service.drift.reference", message: err.to_string() })?;
        let api_keys = match &config.auth {
            Some(auth) => Some(
                auth::ApiKeys::read(auth, &|var| std::env::var(var).ok())
                    .map_err(|message| ServerError::Config { key: "service.auth", message })?,
            ),
            None => None,
        };
        Ok(Self {
            config,
            variants: variants::Variants::new(routes),
            shadow,
            drift,
            started_at: Instant::now(),
            metrics: metrics::Metrics::new(),
            chaos,
            step_delay,
            api_keys,
        })
    }

    /// The engine of a variant by name, once loaded.
    pub fn engine(&self, name: &str) -> Option<&Engine> {
        self.variants.get(name).and_then(|v| v.engine.get())
    }
}

/// Engine options from the service config.
pub fn engine_options(config: &ServiceConfig) -> EngineOptions {
    EngineOptions {
        workers: config.workers.map(NonZeroUsize::get),
        intra_op_threads: config.intra_op_threads.map(NonZeroUsize::get),
        max_batch_size: config.max_batch_size.get(),
        batch_wait: Duration::from_millis(config.batch_wait_ms),
        join_running_batch: config.join_running_batch,
        queue_capacity: config.queue_capacity.get(),
        max_image_pixels: config.max_image_pixels.get(),
        max_new_tokens_limit: config.max_new_tokens_limit.get(),
        max_num_beams: config.max_num_beams.get(),
        onnxruntime_library: config.onnxruntime_library.clone(),
        step_delay: StepDelay::default(),
    }
}

/// Loads the model in `dir` with the options of `config` and starts its workers (blocking);
/// `step_delay` is what the workers pause before each step (the `slow_decoder` fault sets it).
pub fn load_engine(
    config: &ServiceConfig,
    dir: &std::path::Path,
    step_delay: StepDelay,
) -> Result<Engine, EngineError> {
    let spec = ModelSpec::read(dir)?;
    Engine::start(spec, EngineOptions { step_delay, ..engine_options(config) })
}

/// Loads every variant in turn (blocking); stops at the first that fails.
fn load_variants(state: &AppState) -> Result<(), EngineError> {
    for variant in state.variants.iter() {
        let loaded = Instant::now();
        let engine = load_engine(&state.config, &variant.dir, state.step_delay.clone())?;
        let spec = engine.spec();
        tracing::info!(
            model = %variant.name,
            dir = %variant.dir.display(),
            weight = variant.weight,
            layout = %spec.layout_name(),
            workers = engine.threads().workers,
            intra_op_threads = engine.threads().intra_op_threads,
            max_batch_size = engine.options().max_batch_size,
            joins_running_batch = engine.options().join_running_batch && spec.pads_rows,
            num_beams = spec.generation.beam.num_beams,
            load_ms = loaded.elapsed().as_millis() as u64,
            "model loaded and warmed up"
        );
        routes::publish_model_info(state, &variant.name, &engine);
        // `set` only fails if an engine is already there, which cannot happen: one loader.
        let _ = variant.engine.set(engine);
    }
    tracing::info!(models = state.variants.len(), "ready");
    Ok(())
}

/// Serves the API on `listener` until `shutdown` resolves or the model fails to load.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let tls = match &config.tls {
        Some(tls) => {
            Some(listen::tls_acceptor(tls).map_err(|message| ServerError::Config { key: "service.tls", message })?)
        }
        None => None,
    };
    let state = Arc::new(AppState::new(config)?);
    let (load_failed_tx, mut load_failed_rx) = watch::channel(None::<String>);

    let loader_state = Arc::clone(&state);
    let loader = tokio::task::spawn_blocking(move || {
        match load_variants(&loader_state) {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::error!(error = %err, "model failed to load");
                // The receiver lives until `run` returns; if it is gone nobody needs the news.
                let _ = load_failed_tx.send(Some(err.to_string()));
                Err(err)
            }
        }
    });

    let app = router(Arc::clone(&state));
    let load_failed = async move {
        // The sender is dropped once the model loaded; that is not a failure.
        if load_failed_rx.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let stop = async move {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested; draining in-flight requests"),
            () = load_failed => {}
        }
    };
    let expiry = state.chaos.is_some().then(|| {
        tracing::warn!("chaos enabled: POST /chaos from loopback injects faults");
        tokio::spawn(chaos::expire_faults(Arc::clone(&state)))
    });
    let counters = listen::ConnectionCounters {
        open: state.metrics.connections_open.clone(),
        closed: state.metrics.connections_closed.clone(),
    };
    let served = listen::serve(listener, app, tls, state.config.limits.clone(), counters, stop).await;
    if let Some(expiry) = expiry {
        expiry.abort();
    }
    served?;

    let load_result = match loader.await {
        Ok(result) => result,
        Err(join_error) => Err(EngineError::ModelLoad {
            path: state.variants.iter().map(|v| v.dir.display().to_string()).collect::<Vec<_>>().join(", "),
            reason: format!("loader task failed: {join_error}"),
        }),
    };
    let engines: Vec<Engine> = state.variants.iter().filter_map(|v| v.engine.get().cloned()).collect();
    // Joining worker threads blocks; keep it off the async workers.
    let drained = tokio::task::spawn_blocking(move || {
        for engine in engines {
            engine.shutdown(ENGINE_DRAIN_TIMEOUT);
        }
    })
    .await;
    if let Err(err) = drained {
        tracing::warn!(error = %err, "engine shutdown task failed");
    }
    load_result.map_err(ServerError::from)
}
