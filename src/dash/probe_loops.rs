//! The probe schedulers: a health loop, a drift loop and an inference-test loop per watched
//! instance, which send their results as [`Event`]s. They follow the controls the executor
//! holds: where the server is, whether probing is paused, which variants to test, and "run
//! a test cycle now". [`ProbeStarter`] starts one instance's loops (at the start, or when it
//! joins the fleet); dropping its [`InstanceProbes`] stops them. They decide nothing else.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::event::Event;
use super::prober::{ProbeImage, Prober, VariantTag};

/// The executor's end of the controls.
pub struct ProbeHandles {
    url_tx: watch::Sender<Option<String>>,
    paused_tx: watch::Sender<bool>,
    variants_tx: watch::Sender<Vec<String>>,
    test_now: Arc<Notify>,
}

impl ProbeHandles {
    /// Probe this URL from now on.
    pub fn set_target(&self, url: Option<String>) {
        // send_replace never fails: the value is stored even once the loops are gone.
        self.url_tx.send_replace(url);
    }

    /// The server URL as it changes (None while there is nothing to probe).
    pub fn watch_target(&self) -> watch::Receiver<Option<String>> {
        self.url_tx.subscribe()
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused_tx.send_replace(paused);
    }

    /// Test every one of these variants by name on each test image (two or more: A/B).
    pub fn set_variants(&self, variants: Vec<String>) {
        self.variants_tx.send_replace(variants);
    }

    /// Starts an inference-test cycle at once (or as soon as the current one ends).
    pub fn test_now(&self) {
        self.test_now.notify_one();
    }
}

/// The loops' end of the controls.
#[derive(Clone)]
pub struct ProbeControls {
    url_rx: watch::Receiver<Option<String>>,
    paused_rx: watch::Receiver<bool>,
    variants_rx: watch::Receiver<Vec<String>>,
    test_now: Arc<Notify>,
}

impl ProbeControls {
    /// The URL to probe once the server is known and probing is not paused; None once the
    /// handles are gone.
    async fn target(&mut self) -> Option<String> {
        self.paused_rx.wait_for(|paused| !paused).await.ok()?;
        self.url_rx.wait_for(Option::is_some).await.ok().and_then(|url| url.clone())
    }
}

/// A connected pair of controls: no target, not paused.
pub fn controls() -> (ProbeHandles, ProbeControls) {
    let (url_tx, url_rx) = watch::channel(None);
    let (paused_tx, paused_rx) = watch::channel(false);
    let (variants_tx, variants_rx) = watch::channel(Vec::new());
    let test_now = Arc::new(Notify::new());
    (
        ProbeHandles { url_tx, paused_tx, variants_tx, test_now: Arc::clone(&test_now) },
        ProbeControls { url_rx, paused_rx, variants_rx, test_now },
    )
}

/// What every instance's loops share.
#[derive(Clone)]
pub struct ProbeStarter {
    pub prober: Prober,
    pub health_interval: Duration,
    pub inference_interval: Duration,
    pub tests_per_cycle: usize,
    pub images: Vec<ProbeImage>,
    /// Only capwatch's own server has `/drift`.
    pub drift: bool,
    pub events_tx: mpsc::Sender<Event>,
    /// Whether events are tagged with their instance ([`Event::Of`]): with one fixed
    /// instance they need not be.
    pub tagged: bool,
}

/// One instance's loops and their controls; dropping it stops the loops.
pub struct InstanceProbes {
    pub handles: ProbeHandles,
    _tasks: JoinSet<()>,
}

impl ProbeStarter {
    /// Starts the loops of the instance at `instance`; they probe once given a target.
    pub fn start(&self, instance: usize) -> InstanceProbes {
        let (handles, controls) = controls();
        let mut tasks = JoinSet::new();
        let events_tx =
            if self.tagged { tagging(instance, self.events_tx.clone(), &mut tasks) } else { self.events_tx.clone() };
        // Each instance's loops run on their own: one that hangs never stalls the others.
        tasks.spawn(health_loop(self.prober.clone(), self.health_interval, controls.clone(), events_tx.clone()));
        if self.drift {
            // Checked as often as the health.
            tasks.spawn(drift_loop(self.prober.clone(), self.health_interval, controls.clone(), events_tx.clone()));
        }
        tasks.spawn(inference_loop(
            self.prober.clone(),
            self.inference_interval,
            self.tests_per_cycle,
            self.images.clone(),
            controls,
            events_tx,
        ));
        InstanceProbes { handles, _tasks: tasks }
    }
}

/// A sender for one instance's producers: what they send reaches the loop as
/// [`Event::Of`] that instance (a forwarding task, in `tasks`).
fn tagging(instance: usize, events_tx: mpsc::Sender<Event>, tasks: &mut JoinSet<()>) -> mpsc::Sender<Event> {
    let (instance_tx, mut instance_rx) = mpsc::channel::<Event>(16);
    tasks.spawn(async move {
        while let Some(event) = instance_rx.recv().await {
            if events_tx.send(Event::Of { instance, event: Box::new(event) }).await.is_err() {
                return;
            }
        }
    });
    instance_tx
}

/// Runs `probe` on the target every `interval` and sends what it reports (None: nothing this
/// time); stops when the controls or the event channel are gone.
async fn every<Probe, Answer>(
    interval: Duration,
    mut controls: ProbeControls,
    events_tx: mpsc::Sender<Event>,
    mut probe: Probe,
) where
    Probe: FnMut(String) -> Answer,
    Answer: std::future::Future<Output = Option<Event>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(url) = controls.target().await else { return };
        if let Some(event) = probe(url).await
            && events_tx.send(event).await.is_err()
        {
            return;
        }
    }
}

/// `GET /health` every `interval`.
pub async fn health_loop(prober: Prober, interval: Duration, controls: ProbeControls, events_tx: mpsc::Sender<Event>) {
    every(interval, controls, events_tx, |url| {
        let prober = prober.clone();
        async move { Some(Event::Health(prober.health(&url).await)) }
    })
    .await;
}

/// `GET /drift` every `interval` (a capwatch server's drift window against its reference).
/// A server without `/drift` (older, or down) has nothing to say this time.
pub async fn drift_loop(prober: Prober, interval: Duration, controls: ProbeControls, events_tx: mpsc::Sender<Event>) {
    every(interval, controls, events_tx, |url| {
        let prober = prober.clone();
        async move { prober.drift(&url).await.map(|status| Event::Drift(Box::new(status))) }
    })
    .await;
}

/// A cycle of `tests_per_cycle` inference tests every `interval` (or at once on "test
/// now"), the test images in turn, then [`Event::CycleDone`]. When the server has two or
/// more variants, each test sends its image to every variant by name, one round per image.
pub async fn inference_loop(
    prober: Prober,
    interval: Duration,
    tests_per_cycle: usize,
    images: Vec<ProbeImage>,
    mut controls: ProbeControls,
    events_tx: mpsc::Sender<Event>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let test_now = Arc::clone(&controls.test_now);
    let mut turn = images.iter().cycle();
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = test_now.notified() => ticker.reset(),
        }
        for _ in 0..tests_per_cycle {
            let Some(url) = controls.target().await else { return };
            let Some(image) = turn.next() else { return };
            let variants = controls.variants_rx.borrow().clone();
            if variants.len() < 2 {
                let probe = prober.caption(&url, image, None).await;
                if events_tx.send(Event::Probe(probe)).await.is_err() {
                    return;
                }
                continue;
            }
            round += 1;
            let mut variants = variants;
            // Alternate the order, so that neither variant always goes first (warm caches).
            if round.is_multiple_of(2) {
                variants.reverse();
            }
            for name in variants {
                let probe = prober.caption(&url, image, Some(VariantTag { name, round })).await;
                if events_tx.send(Event::Probe(probe)).await.is_err() {
                    return;
                }
            }
        }
        if events_tx.send(Event::CycleDone).await.is_err() {
            return;
        }
    }
}
