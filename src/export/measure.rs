//! What one `capwatch serve` pod needs, measured on this machine: the configured models are
//! loaded in this process exactly as the server loads them ([`crate::server::load_engine`]),
//! timed, and made to caption the test images with every worker's batch full; this
//! process's resident memory is read from `/proc/self/status` before, after loading and
//! after the captions, with its high-water mark as the peak. `export kubernetes` sizes the
//! Deployment from the result. Measuring only; it must not write anything.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::ServiceConfig;
use crate::engine::{Engine, EngineError, StepDelay};
use crate::exit_code;

/// Rounds of warm-up captions; each sends `workers × max_batch_size` at once per model, so
/// every worker decodes a full batch (the most activation memory a worker can hold).
pub const WARM_UP_ROUNDS: usize = 2;

/// Where resident memory is read (Linux).
const PROC_STATUS: &str = "/proc/self/status";

/// What loading and running the models took here.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// From the first model's load to the last one's warm-up: what `/ready` waits for.
    pub load: Duration,
    /// Resident memory before loading (the binary, ONNX Runtime not yet loaded).
    pub rss_before_bytes: u64,
    /// Resident memory once every model is loaded and warmed up.
    pub rss_loaded_bytes: u64,
    /// Resident memory after the warm-up captions.
    pub rss_captioned_bytes: u64,
    /// The process's high-water mark of resident memory (`VmHWM`): loading included.
    pub peak_rss_bytes: u64,
    /// Worker threads per model, as the engine chose them (the same for every model).
    pub workers: usize,
    /// ONNX Runtime intra-op threads per worker.
    pub intra_op_threads: usize,
    /// Models loaded (one, or `service.models`).
    pub models: usize,
    /// Captions made after loading.
    pub captions: usize,
    /// The cores this machine offers the process (the engine's default plan follows them).
    pub cores: usize,
}

/// `Measured on this machine …`: what the export prints of it.
impl std::fmt::Display for Measurement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "Measured on this machine ({} cores): {} model(s) loaded and warmed up in {:.3} s; RSS {:.1} MiB before, \
             {:.1} MiB loaded, {:.1} MiB after {} captions, peak {:.1} MiB; {} workers x {} intra-op threads",
            self.cores,
            self.models,
            self.load.as_secs_f64(),
            mib(self.rss_before_bytes),
            mib(self.rss_loaded_bytes),
            mib(self.rss_captioned_bytes),
            self.captions,
            mib(self.peak_rss_bytes),
            self.workers,
            self.intra_op_threads
        )
    }
}

impl Measurement {
    /// CPU cores the pod's threads use: workers × intra-op threads, for every model.
    pub fn cpu_cores(&self) -> usize {
        self.models * self.workers * self.intra_op_threads
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("invalid config at key `{key}`: {message}")]
    Config { key: &'static str, message: String },
    #[error("cannot read this process's memory use from {PROC_STATUS}: {0}")]
    Memory(String),
}

impl MeasureError {
    /// The exit code, as `capwatch serve` would exit for the same failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Engine(err) => err.exit_code(),
            Self::Config { .. } => exit_code::CONFIG,
            Self::Memory(_) => exit_code::FAILURE,
        }
    }
}

/// Resident memory now and its high-water mark, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// `VmRSS` and `VmHWM` from the text of `/proc/PID/status`.
pub fn parse_proc_status(text: &str) -> Option<MemoryReading> {
    let kib = |field: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|number| number.trim().parse::<u64>().ok())
    };
    Some(MemoryReading { rss_bytes: kib("VmRSS")? * 1024, peak_rss_bytes: kib("VmHWM")? * 1024 })
}

/// This process's memory now.
pub fn read_memory() -> Result<MemoryReading, MeasureError> {
    let text = std::fs::read_to_string(PROC_STATUS).map_err(|err| MeasureError::Memory(err.to_string()))?;
    parse_proc_status(&text).ok_or_else(|| MeasureError::Memory("no VmRSS/VmHWM lines".to_owned()))
}

/// The images to caption: the config's test images that can be read, else (none configured
/// or readable) one drawn here — memory follows the model's input size, not the picture.
fn warm_up_images(images: &[std::path::PathBuf]) -> Vec<Bytes> {
    let read: Vec<Bytes> = images.iter().filter_map(|path| std::fs::read(path).ok()).map(Bytes::from).collect();
    if !read.is_empty() {
        return read;
    }
    let picture = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut png = std::io::Cursor::new(Vec::new());
    match picture.write_to(&mut png, image::ImageFormat::Png) {
        Ok(()) => vec![Bytes::from(png.into_inner())],
        // Encoding a small RGB picture in memory cannot fail; without it there is nothing to send.
        Err(_) => Vec::new(),
    }
}

/// Loads every model of `service` as the server does, captions `test_images` with every
/// worker's batch full (the captions awaited on `runtime`), and reports time, memory and threads.
pub fn measure(
    service: &ServiceConfig,
    test_images: &[std::path::PathBuf],
    runtime: &tokio::runtime::Handle,
) -> Result<Measurement, MeasureError> {
    let variants = service.variants().map_err(|(key, message)| MeasureError::Config { key, message })?;
    let before = read_memory()?;
    let started = Instant::now();
    let mut engines: Vec<Engine> = Vec::with_capacity(variants.len());
    for variant in &variants {
        match crate::server::load_engine(service, &variant.dir, StepDelay::default()) {
            Ok(engine) => engines.push(engine),
            Err(err) => {
                shut_down(&engines);
                return Err(err.into());
            }
        }
    }
    let load = started.elapsed();
    let loaded = read_memory()?;
    let plans: Vec<_> = engines.iter().map(Engine::threads).collect();
    let Some(&plan) = plans.first() else {
        return Err(MeasureError::Config { key: "service.models", message: "no model to load".to_owned() });
    };
    if plans.iter().any(|other| *other != plan) {
        shut_down(&engines);
        return Err(MeasureError::Config {
            key: "service.workers",
            message: format!(
                "the models got different thread plans here ({}); set service.workers and service.intra_op_threads \
                 (or --workers and --intra-op-threads) so every pod runs one plan",
                plans.iter().map(|p| format!("{}×{}", p.workers, p.intra_op_threads)).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let captions = warm_up(&engines, &warm_up_images(test_images), runtime);
    // Read while the workers still hold their sessions: stopping them frees the model.
    let captioned = read_memory();
    shut_down(&engines);
    let (captions, captioned) = (captions?, captioned?);
    Ok(Measurement {
        load,
        rss_before_bytes: before.rss_bytes,
        rss_loaded_bytes: loaded.rss_bytes,
        rss_captioned_bytes: captioned.rss_bytes,
        peak_rss_bytes: captioned.peak_rss_bytes.max(captioned.rss_bytes),
        workers: plan.workers,
        intra_op_threads: plan.intra_op_threads,
        models: engines.len(),
        captions,
        cores: crate::engine::threads::available_cores(),
    })
}

/// [`WARM_UP_ROUNDS`] rounds of `workers × max_batch_size` concurrent captions per model; the
/// number of captions made.
fn warm_up(engines: &[Engine], images: &[Bytes], runtime: &tokio::runtime::Handle) -> Result<usize, MeasureError> {
    if images.is_empty() {
        return Ok(0);
    }
    let mut made = 0;
    for _ in 0..WARM_UP_ROUNDS {
        let requests = engines.iter().flat_map(|engine| {
            let at_once = engine.threads().workers * engine.options().max_batch_size;
            images.iter().cycle().take(at_once).map(move |image| engine.caption(image.clone(), None, None))
        });
        for caption in runtime.block_on(futures::future::join_all(requests)) {
            caption?;
            made += 1;
        }
    }
    Ok(made)
}

/// Stops the engines' workers (they are done once their queue is empty).
fn shut_down(engines: &[Engine]) {
    for engine in engines {
        engine.shutdown(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_its_high_water_mark_in_bytes() {
        let status = "Name:\tcapwatch\nVmPeak:\t  900000 kB\nVmHWM:\t   61440 kB\nVmRSS:\t   51200 kB\nThreads:\t3\n";
        assert_eq!(
            parse_proc_status(status),
            Some(MemoryReading { rss_bytes: 50 * 1024 * 1024, peak_rss_bytes: 60 * 1024 * 1024 })
        );
        assert_eq!(parse_proc_status("VmRSS:\t12 kB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let reading = read_memory().unwrap();
        assert!(reading.rss_bytes > 0 && reading.peak_rss_bytes >= reading.rss_bytes, "{reading:?}");
    }

    #[test]
    fn without_readable_test_images_one_picture_is_drawn() {
        let images = warm_up_images(&[std::path::PathBuf::from("/nonexistent/image.png")]);
        assert_eq!(images.len(), 1);
        assert!(images[0].starts_with(b"\x89PNG"));
    }
}
