//! Benchmarks of hubforge on generated projects. Results and the commands that
//! produced them are recorded in BENCHMARKS.md.
//!
//! hubforge-bench generate --models 10000 --out /tmp/synth10k
//! hubforge-bench load /tmp/synth10k [--select SELECTOR]
//! hubforge-bench export-dbt --models 5000 --out /tmp/synth5k_dbt      (the same project for dbt)
//! hubforge-bench export-sqlmesh --models 1000 --out /tmp/synth1k_sqlmesh  (and for SQLMesh)

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use hubforge::synth::{Flavor, SynthSpec, generate_as};
use hubforge::workspace::Workspace;

#[derive(Parser)]
#[command(name = "hubforge-bench")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// What to generate; the same arguments give the same models, SQL logic and
/// data in every flavor.
#[derive(clap::Args)]
struct GenerateArgs {
    #[arg(long, default_value_t = 1000)]
    models: usize,
    #[arg(long, default_value_t = 10)]
    sources: usize,
    #[arg(long, default_value_t = 30)]
    days: usize,
    #[arg(long, default_value_t = 10)]
    rows_per_day: usize,
    /// Days per batch of the incremental models (`batch = N`; SQLMesh's
    /// `batch_size`). Default: no batch key, so each tool's default applies
    /// (hubforge: 31 days for a daily model). `--batch 366` gives one batch
    /// per model over a year, as the projects generated before had.
    #[arg(long)]
    batch: Option<u32>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic project.
    Generate(GenerateArgs),
    /// Write the synthetic project that `generate` writes with the same
    /// arguments as a dbt project (dbt-core with dbt-duckdb), to compare with peers.
    ExportDbt(GenerateArgs),
    /// Write the synthetic project that `generate` writes with the same
    /// arguments as a SQLMesh project on DuckDB, to compare with peers.
    ExportSqlmesh(GenerateArgs),
    /// Load + render + parse + DAG + selection, timed, with peak memory.
    Load {
        dir: PathBuf,
        #[arg(long, default_value = "+mart_*")]
        select: String,
    },
    /// Record state for a project as if every model had been built with its
    /// current logic, through the real state store (for planning benchmarks).
    RecordState { dir: PathBuf },
    /// The baseline for build benchmarks: the same final SQL statements run
    /// directly in DuckDB (sources loaded into tables, then one CREATE TABLE AS
    /// per model over its whole history), into a fresh database file.
    Baseline {
        dir: PathBuf,
        #[arg(long)]
        database: PathBuf,
    },
    /// Rows per relation of one schema of a DuckDB file, read-only: name, row
    /// count and sum(amount) rounded, one a line, sorted by name. To check
    /// that hubforge, dbt and SQLMesh built the same rows (bench/compare.sh).
    Count {
        database: PathBuf,
        #[arg(long, default_value = "main")]
        schema: String,
    },
    /// Time queries against a DuckDB file, read-only: the best of `--repeat`
    /// runs of each, with its row count. To see what a statement hubforge runs
    /// costs on its own (e.g. a validation pass or an audit).
    /// hubforge's translation of DuckDB queries to Spark SQL: one query per
    /// line of stdin, one JSON object per line out (`spark`, or `error`: why
    /// it has no exact equivalent). To compare translators (bench/translators.py).
    ToSpark,
    Query {
        database: PathBuf,
        #[arg(required = true)]
        sql: Vec<String>,
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

/// Run each of `sql` `repeat` times on `database` (see `Command::Query`).
fn query(database: &std::path::Path, sql: &[String], repeat: usize) -> duckdb::Result<()> {
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
    let conn = duckdb::Connection::open_with_flags(database, config)?;
    for q in sql {
        let mut best = std::time::Duration::MAX;
        let mut rows = 0;
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            let mut stmt = conn.prepare(q)?;
            rows = stmt.query_map([], |_| Ok(()))?.count();
            best = best.min(t.elapsed());
        }
        println!(
            "{:>9.1} ms  {rows:>8} rows  {q}",
            best.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// Print rows per relation of `schema` in `database` (see `Command::Count`).
fn count(database: &std::path::Path, schema: &str) -> duckdb::Result<()> {
    let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly)?;
    let conn = duckdb::Connection::open_with_flags(database, config)?;
    let mut names: Vec<String> = conn
        .prepare(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? \
             AND table_catalog = current_database() ORDER BY table_name",
        )?
        .query_map([schema], |r| r.get(0))?
        .collect::<duckdb::Result<_>>()?;
    names.dedup();
    for name in names {
        let (rows, amount): (i64, Option<f64>) = conn.query_row(
            &format!(
                "SELECT count(*), round(sum(amount), 0)::DOUBLE FROM {}.{}",
                hubforge::engine::quote_ident(schema),
                hubforge::engine::quote_ident(&name)
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        println!(
            "{name}\t{rows}\t{}",
            amount.map_or("NULL".into(), |a| a.to_string())
        );
    }
    Ok(())
}

/// Peak resident memory of this process in MiB (Linux VmHWM).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Write state as if every model of `dir` had been built with its current logic.
fn record_state(dir: &std::path::Path) -> hubforge::Result<()> {
    use hubforge::engine::Engine as _;
    use hubforge::state::{IntervalRecord, StateWrites};
    let ws = Workspace::load(dir, &[])?;
    let engine = hubforge::engine::duckdb::DuckDbEngine::open(
        &ws.project.warehouse_path(),
        &Default::default(),
    )?;
    let s = engine.session()?;
    hubforge::state::migrate(s.as_ref())?;
    let observed = hubforge::observe::observe(s.as_ref(), &ws, hubforge::sources::Ingest::Temp)?;
    let versions = hubforge::fingerprint::versions(&ws, &observed.schemas, &observed.state);
    let now = hubforge::plan::end_of_history(&ws, chrono::Utc::now().naive_utc());
    let mut w = StateWrites::default();
    for (id, v) in versions.iter().enumerate() {
        w.version(v, "bench");
        w.published(v, &v.column_names(), "", "bench");
        let key = ws.dag.nodes[id].name.key();
        let Some((file, _)) = ws.model(id) else {
            continue;
        };
        let fp = v.fingerprint.clone();
        let record = |interval| IntervalRecord {
            interval,
            fingerprint: fp.clone(),
            built_fingerprint: fp.clone(),
            run_id: "bench".into(),
            rows: 0,
            checksum: String::new(),
        };
        match hubforge::plan::universe(&ws, id, now) {
            Some((unit, u)) => {
                for b in u.batches(unit, file.config.batch_size()) {
                    w.interval(key, &record(b));
                }
            }
            None => w.interval(key, &record(hubforge::plan::history(&ws, id, now))),
        }
    }
    for (key, snap) in &observed.sources {
        w.source_snapshot(key, snap, "bench");
    }
    for (key, cols) in &observed.schemas {
        let types = observed.types.get(key).map_or(&[][..], Vec::as_slice);
        w.schema(key, cols, types);
    }
    let mut sql = String::from("BEGIN TRANSACTION;\n");
    for stmt in &w.sql {
        sql.push_str(stmt);
        sql.push('\n');
    }
    sql.push_str("COMMIT;");
    s.execute(&sql)?;
    println!(
        "recorded state for {} nodes ({} statements)",
        versions.len(),
        w.sql.len()
    );
    Ok(())
}

// Parsing thousands of models allocates a lot; mimalloc is markedly faster
// than the system allocator at that (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run the models' SQL directly in DuckDB, as a baseline for `hubforge build`.
fn baseline(dir: &std::path::Path, database: &std::path::Path) -> hubforge::Result<()> {
    use hubforge::engine::Engine as _;
    let ws = Workspace::load(dir, &[])?;
    let _ = std::fs::remove_file(database);
    let engine = hubforge::engine::duckdb::DuckDbEngine::open(database, &Default::default())?;
    let s = engine.session()?;
    let started = Instant::now();
    for (name, config) in &ws.project.config.sources {
        s.execute(&format!(
            "CREATE TABLE {} AS SELECT * FROM {}",
            hubforge::engine::quote_ident(name),
            hubforge::sources::relation(&ws.project.root, config)
        ))?;
    }
    let loaded = started.elapsed();
    let now = hubforge::plan::end_of_history(&ws, chrono::Utc::now().naive_utc());
    for &id in &ws.dag.order {
        let Some((file, _)) = ws.model(id) else {
            continue;
        };
        let history = hubforge::plan::history(&ws, id, now);
        let window =
            hubforge::template::Window::new(history.start(), history.end(), file.config.unit);
        let sql = ws
            .templates
            .render(&file.path, &file.text, &file.body, &window)
            .map_err(|d| hubforge::Error::Input(d.into()))?;
        let what = if file.config.kind == hubforge::config::Kind::View {
            "VIEW"
        } else {
            "TABLE"
        };
        s.execute(&format!(
            "CREATE {what} {} AS {sql}",
            hubforge::engine::quote_ident(&file.name)
        ))?;
    }
    println!(
        "baseline: sources loaded in {:.2}s, models built in {:.2}s, total {:.2}s",
        loaded.as_secs_f64(),
        (started.elapsed() - loaded).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_project(a: GenerateArgs, flavor: Flavor) {
    let spec = SynthSpec {
        models: a.models,
        sources: a.sources,
        days: a.days,
        rows_per_day: a.rows_per_day,
        batch: a.batch,
        ..SynthSpec::default()
    };
    let t = Instant::now();
    generate_as(&a.out, &spec, flavor).expect("generate synthetic project");
    println!(
        "generated {} models ({flavor:?}), {} sources x {} days x {} rows, batch {} in {:.2?} at {}",
        a.models,
        a.sources,
        a.days,
        a.rows_per_day,
        a.batch
            .map_or("default".to_string(), |b| format!("{b} days")),
        t.elapsed(),
        a.out.display()
    );
}

fn main() {
    let args = Args::parse();
    match args.command {
        Command::Generate(a) => write_project(a, Flavor::Hubforge),
        Command::ExportDbt(a) => write_project(a, Flavor::Dbt),
        Command::ExportSqlmesh(a) => write_project(a, Flavor::Sqlmesh),
        Command::Baseline { dir, database } => {
            if let Err(e) = baseline(&dir, &database) {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        Command::ToSpark => {
            for line in std::io::stdin().lines() {
                let sql = line.expect("stdin");
                let out = match hubforge::sql::spark::to_spark(&sql) {
                    Ok(spark) => serde_json::json!({ "duckdb": sql, "spark": spark }),
                    Err(problems) => serde_json::json!({
                        "duckdb": sql,
                        "error": problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("; "),
                    }),
                };
                println!("{out}");
            }
        }
        Command::Count { database, schema } => {
            if let Err(e) = count(&database, &schema) {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        Command::Query {
            database,
            sql,
            repeat,
        } => {
            if let Err(e) = query(&database, &sql, repeat) {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        Command::RecordState { dir } => {
            if let Err(e) = record_state(&dir) {
                eprintln!("{e}");
                std::process::exit(1);
            }
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
