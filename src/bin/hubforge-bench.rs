//! Benchmarks of hubforge on generated projects. Results and the commands that
//! produced them are recorded in BENCHMARKS.md.
//!
//! hubforge-bench generate --models 10000 --out /tmp/synth10k
//! hubforge-bench load /tmp/synth10k [--select SELECTOR]

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use hubforge::synth::{SynthSpec, generate};
use hubforge::workspace::Workspace;

#[derive(Parser)]
#[command(name = "hubforge-bench")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic project.
    Generate {
        #[arg(long, default_value_t = 1000)]
        models: usize,
        #[arg(long, default_value_t = 10)]
        sources: usize,
        #[arg(long, default_value_t = 30)]
        days: usize,
        #[arg(long, default_value_t = 10)]
        rows_per_day: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Load + render + parse + DAG + selection, timed, with peak memory.
    Load {
        dir: PathBuf,
        #[arg(long, default_value = "+mart_*")]
        select: String,
    },
}

/// Peak resident memory of this process in MiB (Linux VmHWM).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args = Args::parse();
    match args.command {
        Command::Generate {
            models,
            sources,
            days,
            rows_per_day,
            out,
        } => {
            let spec = SynthSpec {
                models,
                sources,
                days,
                rows_per_day,
                ..SynthSpec::default()
            };
            let t = Instant::now();
            generate(&out, &spec).expect("generate synthetic project");
            println!(
                "generated {models} models, {sources} sources x {days} days x {rows_per_day} rows in {:.2?} at {}",
                t.elapsed(),
                out.display()
            );
        }
        Command::Load { dir, select } => {
            let t = Instant::now();
            let ws = match Workspace::load(&dir, &[]) {
                Ok(ws) => ws,
                Err(d) => {
                    eprint!("{}", d.render());
                    std::process::exit(2);
                }
            };
            let loaded = t.elapsed();
            let chosen =
                hubforge::select::select(&ws.dag, &ws.project, std::slice::from_ref(&select), &[])
                    .expect("selector");
            let total = t.elapsed();
            println!(
                "load+render+parse+dag: {:.3}s  selection `{select}` ({} nodes): {:.3}s  total: {:.3}s  models: {}  edges: {}  peak RSS: {:.0} MiB",
                loaded.as_secs_f64(),
                chosen.len(),
                (total - loaded).as_secs_f64(),
                total.as_secs_f64(),
                ws.project.models.len(),
                ws.dag.edges().len(),
                peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
    }
}
