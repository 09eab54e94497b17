//! Progress of long work: bars with counts and ETA on a terminal (indicatif),
//! plain log lines otherwise (CI, pipes, tests).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports progress of a run to stderr.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    total: Mutex<u64>,
    done: Mutex<u64>,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise; nothing at all when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var_os("HUBFORGE_PLAIN").is_none();
        let bar = (terminal && !quiet).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} batches  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            quiet,
            started: Instant::now(),
            total: Mutex::new(0),
            done: Mutex::new(0),
        }
    }

    /// Announce how many steps the work has.
    pub fn start(&self, total: u64, what: &str) {
        *self.total.lock().unwrap_or_else(|e| e.into_inner()) = total;
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_message(what.to_string());
            }
            None => self.line(&format!("{what}: {total} batches")),
        }
    }

    /// One step finished.
    pub fn step(&self, message: &str) {
        let done = {
            let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
            *d += 1;
            *d
        };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(message.to_string());
            }
            None => {
                let total = *self.total.lock().unwrap_or_else(|e| e.into_inner());
                let elapsed = self.started.elapsed();
                let eta = if done > 0 && total >= done {
                    let per = elapsed.as_secs_f64() / done as f64;
                    format!(", ETA {:.0}s", per * (total - done) as f64)
                } else {
                    String::new()
                };
                self.line(&format!(
                    "[{done}/{total}] {message} ({:.1}s{eta})",
                    elapsed.as_secs_f64()
                ));
            }
        }
    }

    /// A message that is not a step.
    pub fn note(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => self.line(message),
        }
    }

    fn line(&self, message: &str) {
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{message}");
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// With `HUBFORGE_TIMINGS` set, print how long a stage took and the peak memory
/// so far to stderr (for benchmarks and for users chasing a slow command).
pub fn timing(stage: &str, elapsed: Duration) {
    if std::env::var_os("HUBFORGE_TIMINGS").is_none() {
        return;
    }
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| format!(", peak memory {:.0} MiB", kib / 1024.0))
        .unwrap_or_default();
    eprintln!("timing: {stage} {:.3}s{peak}", elapsed.as_secs_f64());
}
