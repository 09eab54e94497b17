//! Progress of long work: bars with counts and ETA on a terminal (indicatif),
//! plain log lines otherwise (CI, pipes, tests).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much a command says on stderr besides its result and its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: errors and the result only.
    Quiet = 0,
    Normal = 1,
    /// `-v`: also how long each stage and each batch took.
    Verbose = 2,
}

static VERBOSITY: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

/// Set once from the command line (`-q` / `-v`).
pub fn set_verbosity(v: Verbosity) {
    VERBOSITY.store(v as u8, Ordering::Relaxed);
}

pub fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// Whether `-q` was given.
pub fn is_quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

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
        let quiet = quiet || is_quiet();
        let terminal =
            std::io::stderr().is_terminal() && std::env::var_os("HUBFORGE_PLAIN").is_none();
        // Until the batches are known the bar is a spinner saying what is
        // being done (never "0/0 batches").
        let bar = (terminal && !quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .expect("valid template"),
            );
            bar.set_message("starting");
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

    /// Say what is being done before the counted work starts (reading state,
    /// observing sources, planning); shown as a line only with `-v` off a terminal.
    pub fn phase(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(format!("{what}…")),
            None if verbosity() == Verbosity::Verbose => self.line(&format!("{what}…")),
            None => {}
        }
    }

    /// Announce how many steps the work has.
    pub fn start(&self, total: u64, what: &str) {
        *self.total.lock().unwrap_or_else(|e| e.into_inner()) = total;
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} batches  ETA {eta}  {msg}",
                    )
                    .expect("valid template"),
                );
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

impl Drop for Progress {
    fn drop(&mut self) {
        // A command that ends early (nothing to do, an error) leaves no spinner behind.
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

/// With `-v` or `HUBFORGE_TIMINGS` set, print how long a stage (or a batch)
/// took and the peak memory so far to stderr (for benchmarks and for users
/// chasing a slow command).
pub fn timing(stage: &str, elapsed: Duration) {
    if std::env::var_os("HUBFORGE_TIMINGS").is_none() && verbosity() != Verbosity::Verbose {
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
