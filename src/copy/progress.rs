//! Copy progress for people: a bar per collection on a terminal, structured log lines
//! otherwise (every few seconds), and the same counters for metrics and status.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// Counters of one collection's copy, shared by its workers.
#[derive(Debug)]
pub struct CollectionProgress {
    pub collection: String,
    pub expected: AtomicU64,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    bar: Option<ProgressBar>,
}

impl CollectionProgress {
    /// Rows and bytes counted so far.
    pub fn done(&self) -> (u64, u64) {
        (self.rows.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    pub fn add(&self, rows: u64, bytes: u64) {
        let done = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_position(done);
            if done > b.length().unwrap_or(0) {
                b.set_length(done);
            }
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

/// All collections of one run.
pub struct Progress {
    multi: Option<MultiProgress>,
    collections: std::sync::Mutex<Vec<Arc<CollectionProgress>>>,
    started: Instant,
}

impl Progress {
    /// Bars when stderr is a terminal (and `quiet` is off), log lines otherwise.
    pub fn new(quiet: bool) -> Arc<Self> {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Arc::new(Progress {
            multi,
            collections: Default::default(),
            started: Instant::now(),
        })
    }

    /// Registers a collection; `done` counts rows a previous run already copied.
    pub fn collection(&self, name: &str, expected: u64, done: u64) -> Arc<CollectionProgress> {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(expected.max(done)));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20} [{bar:40}] {pos}/{len} rows {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_prefix(name.to_string());
            b.set_position(done);
            b
        });
        let c = Arc::new(CollectionProgress {
            collection: name.into(),
            expected: AtomicU64::new(expected),
            rows: AtomicU64::new(done),
            bytes: AtomicU64::new(0),
            bar,
        });
        if let Ok(mut v) = self.collections.lock() {
            v.push(c.clone());
        }
        c
    }

    /// Every registered collection's counters.
    pub fn list(&self) -> Vec<Arc<CollectionProgress>> {
        self.collections.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Awaits `work` while reporting progress every 5 s (bars on a terminal, log lines
    /// otherwise); the reporting ends with it.
    pub async fn while_running<T>(self: &Arc<Self>, work: impl std::future::Future<Output = T>) -> T {
        let stop = CancellationToken::new();
        let work = async {
            let out = work.await;
            stop.cancel();
            out
        };
        let (out, ()) = tokio::join!(work, self.clone().report_until(Duration::from_secs(5), stop.clone()));
        out
    }

    /// Logs a line per unfinished collection every `every` until `stop` is cancelled (no-op on a
    /// terminal, where the bars speak).
    pub async fn report_until(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        if self.multi.is_some() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
            let list = self.list();
            for c in list {
                let rows = c.rows();
                let expected = c.expected.load(Ordering::Relaxed);
                tracing::info!(
                    collection = %c.collection,
                    rows_done = rows,
                    rows_expected = expected,
                    rows_per_s = (rows as f64 / elapsed) as u64,
                    "snapshot progress"
                );
            }
        }
    }
}
