//! Command-line interface: argument definitions and one function per command.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diagnostics::{Code, Diagnostic, Diagnostics, display_path};
use crate::error::{Error, Result};
use crate::graph::NodeId;
use crate::project::Project;
use crate::select;
use crate::workspace::Workspace;

#[derive(Debug, Parser)]
#[command(
    name = "hubforge",
    version,
    about = "Declarative, SQL-first builds for a Hubhouse warehouse"
)]
pub struct Cli {
    /// The project directory (default: the current directory or the nearest parent with hubforge.toml).
    #[arg(long, global = true, value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Override a [vars] entry for templates (repeatable).
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Who is recorded in state for runs and decisions (default: $USER, else the OS account name).
    #[arg(long, global = true, env = "HUBFORGE_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// Print only errors and the result.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: what is being done, and how long each stage and batch took.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project that checks and builds.
    Init {
        /// Where to create it (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// Load the project, render templates, parse SQL, build the DAG and report problems.
    Check {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also check that every model translates to this engine's SQL
        /// (models are written in DuckDB's dialect); by default the engine of
        /// `[warehouse]` in hubforge.toml.
        #[arg(long, value_enum)]
        engine: Option<EngineName>,
    },
    /// Print the dependency graph.
    Dag {
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
        #[command(flatten)]
        selection: Selection,
    },
    /// List the models, seeds and sources a selection matches.
    Ls {
        #[command(flatten)]
        selection: Selection,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show what is stale and why, and the exact date ranges a build would rebuild.
    Plan {
        #[command(flatten)]
        scope: Scope,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Build everything stale: stage, then publish in one transaction.
    Build {
        #[command(flatten)]
        scope: Scope,
        /// Print the plan and do nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        running: Running,
        #[command(flatten)]
        checks: Checks,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// List the deliveries pending per destination; pause or resume a destination.
    Fulfillment {
        /// Print the JSON Schema of the fulfillment manifest.
        #[arg(long)]
        schema: bool,
        /// Hold every delivery to this destination until it is resumed.
        #[arg(long, value_name = "DEST", conflicts_with = "resume")]
        pause: Option<String>,
        /// Release a paused destination.
        #[arg(long, value_name = "DEST")]
        resume: Option<String>,
        /// Why (kept with the pause or resume).
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write what local destinations have pending: exactly the changed
    /// partitions of each product, each replaced atomically.
    Deliver {
        /// Destinations to deliver (default: every destination not held).
        destinations: Vec<String>,
        /// Print what would be written.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Record that another system delivered what run RUN changed to DEST.
    Ack { run: String, destination: String },
    /// Show what validation found in a run: metrics before → after per model
    /// and unit, audits and thresholds (default: the last validated run).
    Validation {
        /// The run id (or its beginning).
        run: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compare a model as published with what building it now would produce,
    /// row by row on a key (built into a scratch schema, never published).
    Diff {
        /// The model.
        model: String,
        /// First date to compare (inclusive).
        #[arg(long, value_name = "DATE")]
        start: Option<String>,
        /// End of the range (exclusive).
        #[arg(long, value_name = "DATE")]
        end: Option<String>,
        /// Key columns rows are matched on (default: the model's grain).
        #[arg(long, value_delimiter = ',', value_name = "COLS")]
        key: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Record your decision that work stale because of a change of logic is
    /// right as it is (e.g. a fix that only touched recent months); kept in state.
    MarkCurrent {
        #[command(flatten)]
        selection: Selection,
        /// First date of the range to mark (inclusive).
        #[arg(long, value_name = "DATE")]
        start: Option<String>,
        /// End of the range to mark (exclusive).
        #[arg(long, value_name = "DATE")]
        end: Option<String>,
        /// Why the intervals are right: recorded with the decision.
        #[arg(long)]
        note: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A model's built history as merged ranges: current, stale (and why),
    /// marked current (by whom, when, why) or missing, with fingerprint, run and rows.
    Intervals {
        /// The model.
        model: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The run log: when, who, command, scope, what was built, rows, duration and
    /// outcome (published, failed, interrupted); or one run in detail with its plan.
    Runs {
        /// One run in detail: its number (as listed) or id.
        run: Option<String>,
        /// How many of the latest runs to list.
        #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write a static HTML site of the project (DAG, SQL, columns, column-level
    /// lineage, intervals and runs) that opens from disk; --serve shows it on localhost.
    Docs {
        /// Where to write the site (default: target/docs in the project).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Serve the site on 127.0.0.1 after writing it.
        #[arg(long)]
        serve: bool,
        /// The port --serve listens on (0: any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Print a shell completion script: `hubforge completions bash > ~/.local/share/bash-completion/completions/hubforge`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Report what a change (the working tree against a git ref) will rebuild,
    /// for which dates, and who downstream receives new data; for a pull request.
    Impact {
        /// The git ref to compare with, e.g. origin/main.
        #[arg(long, value_name = "REF")]
        base: String,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        /// A minijinja template for the Markdown report (default: templates/impact.md.j2).
        #[arg(long, value_name = "FILE")]
        template: Option<PathBuf>,
        /// Exit with code 1 on breaking changes (or removed models), or on any change.
        #[arg(long, value_enum, value_name = "WHAT")]
        fail_on: Option<FailOn>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Breaking,
    Any,
}

/// What a plan or build covers.
#[derive(Debug, Clone, Default, Args)]
pub struct Scope {
    #[command(flatten)]
    pub selection: Selection,
    /// First date of the range to build (inclusive), e.g. 2025-03-01.
    #[arg(long, value_name = "DATE")]
    pub start: Option<String>,
    /// End of the range (exclusive): --start 2025-03-01 --end 2025-04-01 is March.
    #[arg(long, value_name = "DATE")]
    pub end: Option<String>,
    /// Rebuild the scoped range even where nothing changed (e.g. after a source was repaired).
    #[arg(long)]
    pub backfill: bool,
    /// Accept a source's new schema (columns gone since the last build); the
    /// build records it as the source's schema (repeatable).
    #[arg(long = "accept-schema", value_name = "SOURCE")]
    pub accept_schema: Vec<String>,
}

/// How a build runs.
#[derive(Debug, Clone, Default, Args)]
pub struct Running {
    /// Models and batches built at the same time (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// On Spark: take over the lock of a build that is no longer running
    /// (one killed on another machine; a build killed on this one is noticed).
    #[arg(long)]
    pub break_lock: bool,
}

/// What a build checks before it publishes.
#[derive(Debug, Clone, Default, Args)]
pub struct Checks {
    /// Do not run these audits (by name, or `all`); recorded in the run (repeatable).
    #[arg(long = "skip-audits", value_name = "NAME")]
    pub skip_audits: Vec<String>,
    /// Publish without computing metrics, thresholds or audits; recorded in the run.
    #[arg(long)]
    pub skip_validation: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct Selection {
    /// Graph selectors: name, +name, name+, N+name, name+N, @name, tag:, path:, kind:, product:
    #[arg(long, short = 's', num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Selectors to leave out.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
}

/// The engines a project can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineName {
    /// Embedded DuckDB: the models' own dialect.
    Duckdb,
    /// Apache Spark through Spark Connect: models translated to Spark SQL.
    Spark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    Json,
}

fn parse_var(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got `{s}`")),
    }
}

impl Cli {
    /// Whether errors should be printed as JSON (the command asked for JSON output).
    pub fn wants_json(&self) -> bool {
        match &self.command {
            Command::Check { format, .. }
            | Command::Ls { format, .. }
            | Command::Plan { format, .. }
            | Command::Build { format, .. }
            | Command::Validation { format, .. }
            | Command::Fulfillment { format, .. }
            | Command::Deliver { format, .. }
            | Command::Diff { format, .. }
            | Command::MarkCurrent { format, .. }
            | Command::Intervals { format, .. }
            | Command::Runs { format, .. } => *format == Format::Json,
            Command::Dag { format, .. } => *format == GraphFormat::Json,
            Command::Impact { format, .. } => *format == ReportFormat::Json,
            Command::Init { .. }
            | Command::Completions { .. }
            | Command::Docs { .. }
            | Command::Ack { .. } => false,
        }
    }
}

/// Run a parsed command line, writing its output to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    crate::progress::set_verbosity(if cli.quiet {
        crate::progress::Verbosity::Quiet
    } else if cli.verbose {
        crate::progress::Verbosity::Verbose
    } else {
        crate::progress::Verbosity::Normal
    });
    if let Some(user) = &cli.user {
        crate::build::set_user(user);
    }
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "hubforge", &mut buf);
            out.write_all(&buf)
                .map_err(|e| Error::io("writing output", e))
        }
        Command::Init { dir } => crate::init::init(dir.as_deref().unwrap_or(Path::new(".")), out),
        Command::Check { format, engine } => check(cli, *format, *engine, out),
        Command::Docs {
            out: dir,
            serve,
            port,
        } => docs(cli, dir.as_deref(), *serve, *port, out),
        Command::Intervals { model, format } => intervals(cli, model, *format, out),
        Command::Runs { run, limit, format } => runs(cli, run.as_deref(), *limit, *format, out),
        Command::Dag { format, selection } => dag(cli, *format, selection, out),
        Command::Ls { selection, format } => ls(cli, selection, *format, out),
        Command::Plan { scope, format } => plan(cli, scope, *format, out),
        Command::Build {
            scope,
            dry_run,
            running,
            checks,
            format,
        } => build(cli, scope, *dry_run, running, checks, *format, out),
        Command::Validation { run, format } => validation(cli, run.as_deref(), *format, out),
        Command::Deliver {
            destinations,
            dry_run,
            format,
        } => {
            let ws = load(cli)?;
            let delivered = if on_spark(&ws) {
                deliver_on_spark(&ws, destinations, *dry_run)?
            } else {
                let engine = if *dry_run {
                    open_for_reading(&ws)?
                } else {
                    open_warehouse(&ws)?
                };
                let s = crate::engine::Engine::session(&engine)?;
                // Each product's delivery is recorded once its files are written.
                crate::deliver::deliver(s.as_ref(), &ws, destinations, *dry_run, &mut |sql| {
                    crate::engine::in_transaction(s.as_ref(), &[sql])
                })?
            };
            match format {
                Format::Json => write_json(
                    out,
                    &serde_json::json!({ "schema_version": 1, "dry_run": dry_run, "delivered": delivered }),
                ),
                Format::Text => write_text(out, &crate::deliver::render(&delivered, *dry_run)),
            }
        }
        Command::Ack { run, destination } => {
            let ws = load(cli)?;
            crate::fulfill::destination(&ws, destination)?;
            let n = record(&ws, &format!("ack-{run}"), |state| {
                let (n, sql) = crate::deliver::ack(state.session(), run, destination)?;
                Ok((n, vec![sql]))
            })?;
            write_text(
                out,
                &format!(
                    "Recorded {n} pending deliver{} of run {run} to {destination} as delivered.\n",
                    if n == 1 { "y" } else { "ies" }
                ),
            )
        }
        Command::Fulfillment {
            schema,
            pause,
            resume,
            note,
            format,
        } => fulfillment(
            cli,
            *schema,
            pause.as_deref(),
            resume.as_deref(),
            note,
            *format,
            out,
        ),
        Command::Diff {
            model,
            start,
            end,
            key,
            format,
        } => {
            let ws = load(cli)?;
            let options = crate::validate::diff::DiffOptions {
                model,
                start: start.as_deref(),
                end: end.as_deref(),
                key,
            };
            let report = if on_spark(&ws) {
                diff_on_spark(&ws, &options)?
            } else {
                crate::validate::diff::diff(&ws, &options)?
            };
            match format {
                Format::Json => write_json(out, &serde_json::to_value(&report).expect("json")),
                Format::Text => write_text(out, &crate::validate::diff::render_text(&report)),
            }
        }
        Command::Impact {
            base,
            format,
            template,
            fail_on,
        } => impact(cli, base, *format, template.as_deref(), *fail_on, out),
        Command::MarkCurrent {
            selection,
            start,
            end,
            note,
            format,
        } => {
            let scope = Scope {
                selection: selection.clone(),
                start: start.clone(),
                end: end.clone(),
                backfill: false,
                accept_schema: Vec::new(),
            };
            mark_current(cli, &scope, note, *format, out)
        }
    }
}

fn mark_current(
    cli: &Cli,
    scope: &Scope,
    note: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    if scope.selection.select.is_empty() {
        return Err(invalid_argument(
            "mark-current needs --select: say which models you vouch for",
            "for example: hubforge mark-current --select pricing_model+ --end 2025-10-01 --note \"the bug only touched Q4\"",
        ));
    }
    let ws = load(cli)?;
    let options = plan_options(&ws, scope)?;
    let user = crate::build::user();
    let now = chrono::Utc::now().naive_utc();
    let marked = record(
        &ws,
        &format!("decision-{}", now.format("%Y%m%dT%H%M%S")),
        |state| {
            let prepared = state.prepare(&options)?;
            let (marked, writes) = crate::mark::decide(&ws, &prepared, &options, note, &user, now);
            Ok((marked, writes.sql))
        },
    )?;
    match format {
        Format::Json => write_json(
            out,
            &serde_json::json!({
                "schema_version": 1,
                "user": user,
                "note": note,
                "marked": marked.iter().map(|m| serde_json::json!({
                    "name": m.name,
                    "change": m.change.as_str(),
                    "full": m.full,
                    "intervals": serde_json::to_value(&m.intervals).expect("intervals serialise"),
                    "left_stale": serde_json::to_value(&m.partial).expect("intervals serialise"),
                })).collect::<Vec<_>>(),
            }),
        ),
        Format::Text => {
            let mut text = String::new();
            if marked.is_empty() {
                text.push_str("Nothing to mark: no work in the selection is stale because of a change of logic.\n");
            } else {
                text.push_str(&format!("Marked as current by {user} (\"{note}\"):\n"));
                for m in marked.iter().filter(|m| m.full || !m.intervals.is_empty()) {
                    let what = if m.full {
                        "whole table".to_string()
                    } else {
                        m.intervals.to_string()
                    };
                    text.push_str(&format!("  {}  {}  {what}\n", m.name, m.change.as_str()));
                }
                let partial: Vec<&crate::mark::Marked> =
                    marked.iter().filter(|m| !m.partial.is_empty()).collect();
                if !partial.is_empty() {
                    text.push_str("Left stale: the range cuts these units, and a decision covers whole units only:\n");
                    for m in partial {
                        text.push_str(&format!("  {}  {}\n", m.name, m.partial));
                    }
                }
            }
            write_text(out, &text)
        }
    }
}

/// Turn `--select/--exclude/--start/--end/--backfill` into plan options.
fn plan_options(ws: &Workspace, scope: &Scope) -> Result<crate::plan::PlanOptions> {
    let now = crate::plan::end_of_history(ws, chrono::Utc::now().naive_utc());
    let point = |flag: &str, v: &str| {
        crate::interval::parse_point(v).map_err(|e| {
            invalid_argument(
                format!("--{flag}: {e}"),
                "dates are YYYY-MM-DD (UTC), or YYYY-MM-DDTHH:MM:SS",
            )
        })
    };
    let range = match (&scope.start, &scope.end) {
        (None, None) => None,
        (start, end) => {
            let start = match start {
                Some(s) => point("start", s)?,
                None => ws
                    .project
                    .config
                    .project
                    .start
                    .and_hms_opt(0, 0, 0)
                    .expect("midnight"),
            };
            let end = match end {
                Some(e) => point("end", e)?,
                None => now,
            };
            Some(crate::interval::Interval::new(start, end).map_err(|e| {
                invalid_argument(
                    format!("--start/--end: {e}"),
                    "give --start before --end; the range is half-open: --start 2025-03-01 --end 2025-04-01 is March",
                )
            })?)
        }
    };
    let selected = if scope.selection.select.is_empty() && scope.selection.exclude.is_empty() {
        None
    } else {
        Some(select::models_only(
            &ws.dag,
            &selected(ws, &scope.selection)?,
        ))
    };
    // Restating only views would do nothing: they hold no data.
    if let Some(set) = selected
        .as_ref()
        .filter(|s| scope.backfill && !s.is_empty())
    {
        let view = |&id: &crate::graph::NodeId| {
            ws.dag.nodes[id].kind == crate::graph::NodeKind::Model(crate::config::Kind::View)
        };
        if set.iter().all(view) {
            let names: Vec<String> = set
                .iter()
                .map(|&id| format!("`{}`", ws.dag.nodes[id].name))
                .collect();
            let first = &ws.dag.nodes[*set.iter().next().expect("not empty")].name;
            return Err(invalid_argument(
                format!(
                    "--backfill: {} {} and hold{} no data, so there is nothing to restate",
                    names.join(", "),
                    if names.len() == 1 {
                        "is a view"
                    } else {
                        "are views"
                    },
                    if names.len() == 1 { "s" } else { "" },
                ),
                format!(
                    "restate the models that read {}: `--select {first}+`",
                    if names.len() == 1 { "it" } else { "them" }
                ),
            ));
        }
    }
    Ok(crate::plan::PlanOptions {
        selected,
        range,
        backfill: scope.backfill,
        now,
    })
}

/// Open the warehouse for reading: the file when it exists (read-only), else an
/// empty in-memory database, so that `plan` never creates or changes anything.
fn open_for_reading(ws: &Workspace) -> Result<crate::engine::duckdb::DuckDbEngine> {
    use crate::engine::duckdb::{DuckDbEngine, DuckDbOptions};
    not_on_spark(ws)?;
    let path = ws.project.warehouse_path();
    if path.exists() {
        DuckDbEngine::open(&path, &DuckDbOptions::of(ws, true))
    } else {
        DuckDbEngine::in_memory()
    }
}

/// Plan as `plan` does: the warehouse read-only (or none), sources read into
/// temporary tables. The engine is returned to keep the session's database open.
fn plan_read_only(
    ws: &Workspace,
    scope: &Scope,
) -> Result<(
    crate::plan::PlanOptions,
    crate::engine::duckdb::DuckDbEngine,
    Box<dyn crate::engine::Session>,
    crate::build::Prepared,
)> {
    use crate::engine::Engine as _;
    let options = plan_options(ws, scope)?;
    let engine = open_for_reading(ws)?;
    let session = engine.session()?;
    let prepared =
        crate::build::prepare(session.as_ref(), ws, &options, crate::sources::Ingest::Temp)?;
    Ok((options, engine, session, prepared))
}

/// What opens the DuckDB warehouse file refuses a project on Spark rather
/// than answer from (or create) a local file that is not its warehouse:
/// every command takes its Spark path before it gets here.
fn not_on_spark(ws: &Workspace) -> Result<()> {
    if on_spark(ws) {
        return Err(invalid_argument(
            "this project is built on Spark ([warehouse] engine = \"spark\" in hubforge.toml): \
             it has no DuckDB warehouse file to open"
                .to_string(),
            "every command runs on Spark; this one took the DuckDB path by mistake: \
             please report it"
                .to_string(),
        ));
    }
    Ok(())
}

fn on_spark(ws: &Workspace) -> bool {
    ws.project.config.warehouse.engine == crate::config::EngineKind::Spark
}

/// Where the commands that only read state find it: the warehouse file
/// (read-only) on DuckDB, the replayed state log on Spark.
enum StateStore {
    Warehouse {
        _engine: crate::engine::duckdb::DuckDbEngine,
        session: Box<dyn crate::engine::Session>,
    },
    #[cfg(feature = "spark")]
    Spark(crate::build::spark::Replica),
}

impl StateStore {
    fn session(&self) -> &dyn crate::engine::Session {
        match self {
            StateStore::Warehouse { session, .. } => session.as_ref(),
            #[cfg(feature = "spark")]
            StateStore::Spark(replica) => replica.session.as_ref(),
        }
    }
}

fn state_store(ws: &Workspace) -> Result<StateStore> {
    if on_spark(ws) {
        return spark_state_store(ws);
    }
    let engine = open_for_reading(ws)?;
    let session = crate::engine::Engine::session(&engine)?;
    Ok(StateStore::Warehouse {
        _engine: engine,
        session,
    })
}

#[cfg(feature = "spark")]
fn spark_state_store(ws: &Workspace) -> Result<StateStore> {
    let engine = spark_engine(ws)?;
    Ok(StateStore::Spark(crate::build::spark::replayed(
        ws,
        engine.as_ref(),
    )?))
}

#[cfg(not(feature = "spark"))]
fn spark_state_store(_: &Workspace) -> Result<StateStore> {
    without_spark()
}

/// Record what a command decided in the project's state: in the warehouse
/// file on DuckDB, in the state log on Spark (as an entry named `id`).
fn record<T>(
    ws: &Workspace,
    id: &str,
    decide: impl FnOnce(&dyn crate::build::StateView) -> Result<(T, Vec<String>)>,
) -> Result<T> {
    if on_spark(ws) {
        return record_on_spark(ws, id, decide);
    }
    crate::build::write_state(ws, &open_warehouse(ws)?, decide)
}

#[cfg(feature = "spark")]
fn record_on_spark<T>(
    ws: &Workspace,
    id: &str,
    decide: impl FnOnce(&dyn crate::build::StateView) -> Result<(T, Vec<String>)>,
) -> Result<T> {
    crate::build::spark::write_state(ws, spark_engine(ws)?.as_ref(), id, decide)
}

#[cfg(not(feature = "spark"))]
fn record_on_spark<T>(
    _: &Workspace,
    _: &str,
    _: impl FnOnce(&dyn crate::build::StateView) -> Result<(T, Vec<String>)>,
) -> Result<T> {
    without_spark()
}

/// Open the warehouse to write to it (creating it when absent).
fn open_warehouse(ws: &Workspace) -> Result<crate::engine::duckdb::DuckDbEngine> {
    not_on_spark(ws)?;
    crate::engine::duckdb::DuckDbEngine::open(&ws.project.warehouse_path(), &warehouse_options(ws))
}

fn warehouse_options(ws: &Workspace) -> crate::engine::duckdb::DuckDbOptions {
    crate::engine::duckdb::DuckDbOptions::of(ws, false)
}

/// The Spark Connect server of a project whose `[warehouse] engine = "spark"`.
#[cfg(feature = "spark")]
fn spark_engine(ws: &Workspace) -> Result<std::sync::Arc<dyn crate::engine::Engine>> {
    Ok(std::sync::Arc::new(
        crate::engine::spark::SparkEngine::connect(ws.project.config.warehouse.spark_url())?,
    ))
}

#[cfg(not(feature = "spark"))]
fn spark_engine(_: &Workspace) -> Result<std::sync::Arc<dyn crate::engine::Engine>> {
    without_spark()
}

/// What every command says of a Spark project to a hubforge compiled
/// without the Spark engine.
#[cfg(not(feature = "spark"))]
fn without_spark<T>() -> Result<T> {
    Err(Error::Engine(
        "this project is built on Spark ([warehouse] engine = \"spark\" in hubforge.toml), and \
         this hubforge was compiled without the Spark engine; build hubforge with \
         `cargo build --features spark`"
            .to_string(),
    ))
}

#[cfg(feature = "spark")]
fn diff_on_spark(
    ws: &Workspace,
    options: &crate::validate::diff::DiffOptions,
) -> Result<crate::validate::diff::DiffReport> {
    crate::build::spark::diff(ws, spark_engine(ws)?.as_ref(), options)
}

#[cfg(not(feature = "spark"))]
fn diff_on_spark(
    _: &Workspace,
    _: &crate::validate::diff::DiffOptions,
) -> Result<crate::validate::diff::DiffReport> {
    without_spark()
}

#[cfg(feature = "spark")]
fn build_on_spark(
    ws: &Workspace,
    engine: &dyn crate::engine::Engine,
    options: &crate::build::BuildOptions,
) -> Result<crate::build::BuildSummary> {
    crate::build::spark::build(ws, engine, options, crate::interrupt::flag())
}

#[cfg(not(feature = "spark"))]
fn build_on_spark(
    _: &Workspace,
    _: &dyn crate::engine::Engine,
    _: &crate::build::BuildOptions,
) -> Result<crate::build::BuildSummary> {
    without_spark()
}

/// `plan` on Spark: state replayed from the warehouse's log, nothing changed.
#[cfg(feature = "spark")]
fn plan_on_spark(ws: &Workspace, scope: &Scope) -> Result<crate::build::Prepared> {
    let options = plan_options(ws, scope)?;
    let engine = spark_engine(ws)?;
    let (_replica, prepared) =
        crate::build::spark::prepare_read_only(ws, engine.as_ref(), &options)?;
    Ok(prepared)
}

#[cfg(not(feature = "spark"))]
fn plan_on_spark(_: &Workspace, _: &Scope) -> Result<crate::build::Prepared> {
    without_spark()
}

fn plan(cli: &Cli, scope: &Scope, format: Format, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    let (_engine, prepared) = if on_spark(&ws) {
        (None, plan_on_spark(&ws, scope)?)
    } else {
        let (_, engine, _, prepared) = plan_read_only(&ws, scope)?;
        (Some(engine), prepared)
    };
    crate::observe::check_drift(&prepared.observed, &scope.accept_schema)?;
    match format {
        Format::Json => write_json(out, &crate::render::plan_json(&ws, &prepared.plan)),
        Format::Text => write_text(
            out,
            &crate::render::plan_text(
                &ws,
                &prepared.plan,
                &prepared.observed.state,
                &prepared.versions,
            ),
        ),
    }
}

fn build(
    cli: &Cli,
    scope: &Scope,
    dry_run: bool,
    running: &Running,
    checks: &Checks,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    // The answer of the last build, when it found nothing to do and nothing
    // it read has changed since (see `noop`).
    let t = std::time::Instant::now();
    let root = Project::find_root(cli.project.as_deref())?;
    // On Spark, others can write the warehouse without a trace on this machine.
    let on_spark = Project::load_config(&root)
        .is_ok_and(|(_, c)| c.warehouse.engine == crate::config::EngineKind::Spark);
    let noop = (!dry_run && format == Format::Text && !on_spark)
        .then(|| {
            let args: Vec<String> = std::env::args().skip(1).collect();
            crate::noop::inputs(&root, &args, chrono::Utc::now().naive_utc())
        })
        .flatten();
    if let Some(text) = noop.as_ref().and_then(|n| crate::noop::answer(&root, n)) {
        crate::progress::timing("answered from the last no-op build", t.elapsed());
        return write_text(out, &quiet_filter(text));
    }
    let ws = load(cli)?;
    let options = plan_options(&ws, scope)?;
    if running.break_lock && !on_spark {
        return Err(invalid_argument(
            "--break-lock is for projects on Spark",
            "on DuckDB the warehouse's lock ends with the process that holds it",
        ));
    }
    if dry_run {
        return plan(cli, scope, format, out);
    }
    let engine: std::sync::Arc<dyn crate::engine::Engine> = if on_spark {
        spark_engine(&ws)?
    } else {
        std::sync::Arc::new(crate::engine::duckdb::DuckDbEngine::open(
            &ws.project.warehouse_path(),
            &warehouse_options(&ws),
        )?)
    };
    crate::interrupt::watch(engine.clone());
    let threads = running
        .threads
        .or(ws.project.config.warehouse.threads)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let build_options = crate::build::BuildOptions {
        plan: options,
        dry_run: false,
        threads,
        quiet: format == Format::Json,
        command: crate::build::command_line(),
        accept_schema: scope.accept_schema.clone(),
        skip_audits: checks.skip_audits.clone(),
        skip_validation: checks.skip_validation,
        break_lock: running.break_lock,
    };
    let summary = if on_spark {
        build_on_spark(&ws, engine.as_ref(), &build_options)
    } else {
        crate::build::build(
            &ws,
            engine.as_ref(),
            &build_options,
            crate::interrupt::flag(),
        )
    };
    // After a build that did work, what the same command would answer now:
    // planned again from the state it wrote, with the warehouse still open
    // (a second's planning on 10,000 models), so that the next `build` with
    // nothing changed is answered from the record below at once.
    let answer_now = match &summary {
        Ok(done) if noop.is_some() && !crate::render::nothing_built(done) => {
            let t = std::time::Instant::now();
            let answer =
                crate::build::answer_if_nothing_to_do(&ws, engine.as_ref(), &build_options)
                    .ok()
                    .flatten()
                    .map(|s| crate::render::build_text(&ws, &s));
            crate::progress::timing("planned again for the next build", t.elapsed());
            answer
        }
        _ => None,
    };
    // Close the warehouse cleanly, whatever happened.
    crate::interrupt::release();
    drop(engine);
    let summary = summary.inspect_err(|_| crate::noop::remember(&root, None, None))?;
    match format {
        Format::Json => {
            crate::noop::remember(&root, None, None);
            write_json(out, &crate::render::build_json(&ws, &summary))
        }
        Format::Text => {
            let text = crate::render::build_text(&ws, &summary);
            let did_nothing = crate::render::nothing_built(&summary);
            let record = if did_nothing {
                Some(&text)
            } else {
                answer_now.as_ref()
            };
            crate::noop::remember(
                &root,
                noop.as_ref().filter(|_| record.is_some()),
                record.map(String::as_str),
            );
            write_text(out, &quiet_filter(text))
        }
    }
}

/// Quiet: the summary lines of a build, without a line per model.
fn quiet_filter(text: String) -> String {
    if crate::progress::is_quiet() {
        text.lines()
            .filter(|l| !l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect()
    } else {
        text
    }
}

fn intervals(cli: &Cli, model: &str, format: Format, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    if let Some(n) = ws.dag.lookup(model)
        && !ws.dag.nodes[n].kind.is_model()
    {
        return Err(invalid_argument(
            format!(
                "`{model}` is a {}: hubforge keeps built intervals for models",
                ws.dag.nodes[n].kind.as_str()
            ),
            format!("`hubforge ls --select {model}+` lists the models that read it"),
        ));
    }
    let node = ws
        .dag
        .lookup(model)
        .filter(|&n| ws.dag.nodes[n].kind.is_model())
        .ok_or_else(|| {
            let names = ws
                .dag
                .nodes
                .iter()
                .filter(|n| n.kind.is_model())
                .map(|n| n.name.as_str());
            let help = match crate::diagnostics::did_you_mean(model, names) {
                Some(s) => format!("did you mean `{s}`? (`hubforge ls` lists the models)"),
                None => "`hubforge ls --select kind:model` lists the models".to_string(),
            };
            invalid_argument(format!("no model named `{model}`"), help)
        })?;
    let history = if on_spark(&ws) {
        intervals_on_spark(&ws, node)?
    } else {
        let (_, _engine, session, prepared) = plan_read_only(&ws, &Scope::default())?;
        let mut history = model_history(&ws, node, session.as_ref(), &prepared)?;
        crate::intervals::count_rows(
            &ws,
            node,
            &prepared.observed.state,
            &mut history,
            crate::intervals::count_in_warehouse(session.as_ref()),
        );
        history
    };
    match format {
        Format::Json => write_json(out, &crate::intervals::to_json(&history)),
        Format::Text => write_text(out, &crate::intervals::to_text(&history)),
    }
}

/// A model's intervals as state and the plan see them (`state`: the state store).
fn model_history(
    ws: &Workspace,
    node: NodeId,
    state: &dyn crate::engine::Session,
    prepared: &crate::build::Prepared,
) -> Result<crate::intervals::History> {
    let key = ws.dag.nodes[node].name.key().to_string();
    let decisions = crate::state::read_decisions(state, Some(&key))?
        .remove(&key)
        .unwrap_or_default();
    let runs = crate::intervals::run_numbers(state)?;
    Ok(crate::intervals::history(
        ws,
        prepared,
        node,
        prepared.plan.models.iter().find(|w| w.node == node),
        &decisions,
        &runs,
    ))
}

#[cfg(feature = "spark")]
fn intervals_on_spark(ws: &Workspace, node: NodeId) -> Result<crate::intervals::History> {
    let options = plan_options(ws, &Scope::default())?;
    let engine = spark_engine(ws)?;
    let (replica, prepared) =
        crate::build::spark::prepare_read_only(ws, engine.as_ref(), &options)?;
    let mut history = model_history(ws, node, replica.session.as_ref(), &prepared)?;
    let spark = engine.session()?;
    crate::intervals::count_rows(
        ws,
        node,
        &prepared.observed.state,
        &mut history,
        |table, window| crate::build::spark::count_rows(ws, spark.as_ref(), table, window),
    );
    Ok(history)
}

/// `deliver` on Spark: the pending rows are read from Spark into the local
/// replica of state, and written to the destinations from there; the
/// deliveries are recorded in the state log when the command ends (a
/// delivery stopped before that is written again, file by file, next time).
#[cfg(feature = "spark")]
fn deliver_on_spark(
    ws: &Workspace,
    destinations: &[String],
    dry_run: bool,
) -> Result<Vec<crate::deliver::Delivered>> {
    let engine = spark_engine(ws)?;
    let deliver = |state: &dyn crate::engine::Session| {
        let pending = crate::deliver::to_deliver(state, ws, destinations)?;
        crate::build::spark::pull_pending(ws, engine.as_ref(), state, &pending)?;
        let mut writes = Vec::new();
        let delivered = crate::deliver::deliver(state, ws, destinations, dry_run, &mut |sql| {
            writes.push(sql);
            Ok(())
        })?;
        Ok((delivered, writes))
    };
    if dry_run {
        let replica = crate::build::spark::replayed(ws, engine.as_ref())?;
        return deliver(replica.session.as_ref()).map(|(delivered, _)| delivered);
    }
    let id = format!("deliver-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"));
    crate::build::spark::write_state(ws, engine.as_ref(), &id, |view| deliver(view.session()))
}

#[cfg(not(feature = "spark"))]
fn deliver_on_spark(
    _: &Workspace,
    _: &[String],
    _: bool,
) -> Result<Vec<crate::deliver::Delivered>> {
    without_spark()
}

#[cfg(not(feature = "spark"))]
fn intervals_on_spark(_: &Workspace, _: NodeId) -> Result<crate::intervals::History> {
    without_spark()
}

/// What the docs site shows of what was built: published types, the latest
/// runs and every model's intervals (`s`: the state store).
fn built_from_state(
    ws: &Workspace,
    s: &dyn crate::engine::Session,
    prepared: &crate::build::Prepared,
    types: std::collections::BTreeMap<String, Vec<(String, String)>>,
) -> Result<crate::docs::Built> {
    let mut built = crate::docs::Built {
        types,
        runs: crate::state::read_runs(s, Some(200), None)?,
        ..crate::docs::Built::default()
    };
    let numbers = crate::intervals::run_numbers(s)?;
    let mut decisions = crate::state::read_decisions(s, None)?;
    let work: std::collections::HashMap<NodeId, &crate::plan::ModelWork> =
        prepared.plan.models.iter().map(|w| (w.node, w)).collect();
    for id in 0..ws.dag.len() {
        if !ws.dag.nodes[id].kind.is_model() {
            continue;
        }
        let key = ws.dag.nodes[id].name.key().to_string();
        let history = crate::intervals::history(
            ws,
            prepared,
            id,
            work.get(&id).copied(),
            &decisions.remove(&key).unwrap_or_default(),
            &numbers,
        );
        built
            .intervals
            .insert(key, crate::intervals::to_json(&history));
    }
    Ok(built)
}

#[cfg(feature = "spark")]
fn docs_on_spark(ws: &Workspace) -> Result<(crate::build::Prepared, crate::docs::Built)> {
    let options = plan_options(ws, &Scope::default())?;
    let engine = spark_engine(ws)?;
    let (replica, prepared) =
        crate::build::spark::prepare_read_only(ws, engine.as_ref(), &options)?;
    let types =
        crate::build::spark::published_types(ws, engine.as_ref(), &prepared.observed.state)?;
    let built = built_from_state(ws, replica.session.as_ref(), &prepared, types)?;
    Ok((prepared, built))
}

#[cfg(not(feature = "spark"))]
fn docs_on_spark(_: &Workspace) -> Result<(crate::build::Prepared, crate::docs::Built)> {
    without_spark()
}

fn docs(cli: &Cli, dir: Option<&Path>, serve: bool, port: u16, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    let t = std::time::Instant::now();
    let (prepared, built) = if on_spark(&ws) {
        docs_on_spark(&ws)?
    } else {
        let (_, _engine, session, prepared) = plan_read_only(&ws, &Scope::default())?;
        let built = if ws.project.warehouse_path().exists() {
            let types = crate::docs::published_types(session.as_ref())?;
            built_from_state(&ws, session.as_ref(), &prepared, types)?
        } else {
            crate::docs::Built::default()
        };
        (prepared, built)
    };
    let dir = dir.map_or_else(
        || ws.project.root.join("target").join("docs"),
        Path::to_path_buf,
    );
    let files = crate::docs::generate(&ws, &prepared.versions, &built, prepared.now, &dir)?;
    crate::progress::timing("docs", t.elapsed());
    let index = dir.join("index.html");
    if !crate::progress::is_quiet() || !serve {
        write_text(
            out,
            &format!(
                "Wrote {} ({files} files, {} nodes); open it in a browser: file://{}\n",
                display_path(&dir),
                ws.dag.len(),
                std::fs::canonicalize(&index).unwrap_or(index).display()
            ),
        )?;
    }
    if serve {
        crate::docs::serve(&dir, port, out)?;
    }
    Ok(())
}

fn runs(
    cli: &Cli,
    run: Option<&str>,
    limit: usize,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    let ws = load(cli)?;
    let state = state_store(&ws)?;
    let log = crate::state::read_runs(state.session(), run.is_none().then_some(limit), run)?;
    match run {
        Some(id) => {
            let Some(one) = log.first() else {
                return Err(invalid_argument(
                    format!("no run `{id}` in the run log"),
                    "`hubforge runs` lists the runs with their numbers and ids",
                ));
            };
            match format {
                Format::Json => {
                    let mut v = crate::runs::run_json(one, true);
                    v["schema_version"] = serde_json::json!(1);
                    write_json(out, &v)
                }
                Format::Text => write_text(out, &crate::runs::detail_text(one)),
            }
        }
        None => match format {
            Format::Json => write_json(out, &crate::runs::list_json(&log)),
            Format::Text => write_text(out, &crate::runs::list_text(&log)),
        },
    }
}

/// `hubforge fulfillment`.
fn fulfillment(
    cli: &Cli,
    schema: bool,
    pause: Option<&str>,
    resume: Option<&str>,
    note: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<()> {
    if schema {
        return write_text(out, crate::fulfill::MANIFEST_SCHEMA);
    }
    let ws = load(cli)?;
    if let Some(dest) = pause.or(resume) {
        crate::fulfill::destination(&ws, dest)?;
        let sql = crate::fulfill::paused_sql(dest, pause.is_some(), &crate::build::user(), note);
        record(&ws, &format!("destination-{dest}"), |_| Ok(((), vec![sql])))?;
        return write_text(
            out,
            &format!(
                "{} {dest}{}\n",
                if pause.is_some() { "Paused" } else { "Resumed" },
                if pause.is_some() {
                    ": its deliveries are held until `hubforge fulfillment --resume`"
                } else {
                    ""
                }
            ),
        );
    }
    let state = state_store(&ws)?;
    let pending = crate::fulfill::pending(state.session(), &ws)?;
    match format {
        Format::Json => write_json(
            out,
            &serde_json::json!({ "schema_version": 1, "pending": pending }),
        ),
        Format::Text => write_text(out, &crate::fulfill::render_pending(&pending)),
    }
}

/// `hubforge validation [RUN]`.
fn validation(cli: &Cli, run: Option<&str>, format: Format, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    let state = state_store(&ws)?;
    let found = crate::state::read_validation(state.session(), run)?;
    let Some((run_id, report)) = found else {
        return Err(Error::Input(
            Diagnostic::error(
                Code::InvalidArgument,
                match run {
                    Some(r) => format!("no run `{r}` with a validation in this warehouse"),
                    None => "no validated run in this warehouse yet".to_string(),
                },
            )
            .with_help("`hubforge build` validates every model it rebuilds")
            .into(),
        ));
    };
    match format {
        Format::Json => write_json(
            out,
            &serde_json::json!({ "schema_version": 1, "run_id": run_id, "validation": report }),
        ),
        Format::Text => {
            let mut text = format!("Run {run_id}\n");
            let body = crate::validate::render_text(&report);
            if body.is_empty() {
                text.push_str("Every rebuilt model is unchanged and every audit passed.\n");
            }
            text.push_str(&body);
            write_text(out, &text)
        }
    }
}

fn impact(
    cli: &Cli,
    base: &str,
    format: ReportFormat,
    template: Option<&Path>,
    fail_on: Option<FailOn>,
    out: &mut dyn Write,
) -> Result<()> {
    let root = Project::find_root(cli.project.as_deref())?;
    // Read before any work: a template that cannot be read is an argument error.
    let template_text = match template {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            invalid_argument(
                format!("--template: cannot read {}: {e}", display_path(path)),
                "give the path of a minijinja Markdown template",
            )
        })?),
        None => None,
    };
    let report = crate::impact::impact(&root, &cli.vars, base, chrono::Utc::now().naive_utc())?;
    match format {
        ReportFormat::Json => write_json(out, &report.to_json())?,
        ReportFormat::Markdown => {
            let (text, name) = match (&template_text, template) {
                (Some(t), Some(p)) => (t.as_str(), display_path(p)),
                _ => (
                    crate::impact::DEFAULT_TEMPLATE,
                    "templates/impact.md.j2".to_string(),
                ),
            };
            write_text(out, &report.to_markdown(text, &name)?)?
        }
    }
    let fail_on = fail_on.map(|f| match f {
        FailOn::Breaking => crate::impact::FailOn::Breaking,
        FailOn::Any => crate::impact::FailOn::Any,
    });
    match fail_on.and_then(|f| report.failure(f)) {
        Some(why) => Err(Error::Data(why)),
        None => Ok(()),
    }
}

/// Find and load the project the command line points at.
pub fn load(cli: &Cli) -> Result<Workspace> {
    let root = Project::find_root(cli.project.as_deref())?;
    let t = std::time::Instant::now();
    let ws = Workspace::load(&root, &cli.vars)?;
    crate::progress::timing("load project", t.elapsed());
    Ok(ws)
}

fn write_json(out: &mut dyn Write, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    writeln!(out, "{text}").map_err(|e| Error::io("writing output", e))
}

fn write_text(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|e| Error::io("writing output", e))
}

fn check(cli: &Cli, format: Format, engine: Option<EngineName>, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    if engine.map_or(on_spark(&ws), |e| e == EngineName::Spark) {
        let problems = ws.untranslatable_for_spark();
        if !problems.is_empty() {
            return Err(crate::error::Error::Input(Diagnostics(problems).sorted()));
        }
    }
    let warnings = Diagnostics(ws.warnings.clone());
    let count = |pred: fn(&crate::graph::NodeKind) -> bool| {
        ws.dag.nodes.iter().filter(|n| pred(&n.kind)).count()
    };
    let models = count(|k| k.is_model());
    let sources = count(|k| *k == crate::graph::NodeKind::Source);
    let seeds = count(|k| *k == crate::graph::NodeKind::Seed);
    let fallback: Vec<&str> = ws
        .models
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a.parsed, crate::workspace::Parsed::DuckDb { .. }))
        .map(|(i, _)| ws.project.models[i].name.as_str())
        .collect();
    match format {
        Format::Json => {
            let mut v = warnings.to_json();
            v["ok"] = serde_json::json!(true);
            v["project"] = serde_json::json!(ws.project.config.project.name);
            v["models"] = serde_json::json!(models);
            v["sources"] = serde_json::json!(sources);
            v["seeds"] = serde_json::json!(seeds);
            v["edges"] = serde_json::json!(ws.dag.edges().len());
            v["lineage_unknown"] = serde_json::json!(fallback);
            write_json(out, &v)
        }
        Format::Text => {
            let mut text = warnings.render();
            text.push_str(&format!(
                "{}: {models} models, {sources} sources, {seeds} seeds, {} dependencies: ok\n",
                ws.project.config.project.name,
                ws.dag.edges().len()
            ));
            if !fallback.is_empty() {
                text.push_str(&format!(
                    "note: parsed by DuckDB only (column lineage unknown): {}\n",
                    fallback.join(", ")
                ));
            }
            write_text(out, &text)
        }
    }
}

fn selected(ws: &Workspace, selection: &Selection) -> Result<BTreeSet<NodeId>> {
    Ok(select::select(
        &ws.dag,
        &ws.project,
        &selection.select,
        &selection.exclude,
    )?)
}

fn dag(cli: &Cli, format: GraphFormat, selection: &Selection, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    let chosen = selected(&ws, selection)?;
    let filter = (chosen.len() < ws.dag.len()).then_some(&chosen);
    match format {
        GraphFormat::Mermaid => write_text(out, &ws.dag.to_mermaid(filter)),
        GraphFormat::Dot => write_text(out, &ws.dag.to_dot(filter)),
        GraphFormat::Json => write_json(out, &ws.dag.to_json(filter)),
    }
}

fn ls(cli: &Cli, selection: &Selection, format: Format, out: &mut dyn Write) -> Result<()> {
    let ws = load(cli)?;
    let chosen = selected(&ws, selection)?;
    let rows: Vec<NodeId> = ws
        .dag
        .order
        .iter()
        .copied()
        .filter(|i| chosen.contains(i))
        .collect();
    match format {
        Format::Json => {
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|&i| {
                    let node = &ws.dag.nodes[i];
                    let config = node.model.map(|m| &ws.project.models[m].config);
                    serde_json::json!({
                        "name": node.name,
                        "kind": node.kind.as_str(),
                        "file": display_path(&node.file),
                        "tags": config.map(|c| c.tags.clone()).unwrap_or_default(),
                        "product": config.is_some_and(|c| c.product),
                        "depends_on": ws.dag.parents(i).iter().map(|&p| ws.dag.nodes[p].name.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            write_json(
                out,
                &serde_json::json!({ "schema_version": 1, "nodes": items }),
            )
        }
        Format::Text => {
            let width = rows
                .iter()
                .map(|&i| ws.dag.nodes[i].name.len())
                .max()
                .unwrap_or(0);
            let mut text = String::new();
            for &i in &rows {
                let n = &ws.dag.nodes[i];
                text.push_str(&format!(
                    "{:width$}  {:11}  {}\n",
                    n.name,
                    n.kind.as_str(),
                    display_path(&n.file)
                ));
            }
            write_text(out, &text)
        }
    }
}

/// An argument error as a diagnostic (exit code 2).
pub fn invalid_argument(message: impl Into<String>, help: impl Into<String>) -> Error {
    Error::Input(
        Diagnostic::error(Code::InvalidArgument, message)
            .with_help(help)
            .into(),
    )
}
