//! Synthetic projects for benchmarks: N models in layered DAGs with realistic
//! SQL (CTEs, joins, window functions, aggregates, CASE, macros and vars), and
//! source data of a chosen size.

use std::fmt::Write as _;
use std::path::Path;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub models: usize,
    /// Number of time-partitioned sources (one CSV file per source).
    pub sources: usize,
    /// Days of source data, from 2024-01-01.
    pub days: usize,
    /// Source rows per day per source.
    pub rows_per_day: usize,
    pub seed: u64,
    /// Days per batch of the incremental models (hubforge's `batch`, SQLMesh's
    /// `batch_size`). `None` writes no batch key: each tool's default (hubforge:
    /// 31 days for a daily model; SQLMesh: the whole range in one query).
    pub batch: Option<u32>,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            models: 1000,
            sources: 10,
            days: 0,
            rows_per_day: 0,
            seed: 42,
            batch: None,
        }
    }
}

/// The tool a generated project is written for. The models' logic, the data
/// and the DAG are the same in each; only how a model names its parents, the
/// vars, the macros and its time window, and how it declares its kind, differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Hubforge,
    /// dbt-core with dbt-duckdb: `ref`/`source`, `var('start')`/`var('end')`
    /// for the window, incremental models by delete+insert.
    Dbt,
    /// SQLMesh on DuckDB: INCREMENTAL_BY_TIME_RANGE/FULL models, seeds for the
    /// sources, Python macros.
    Sqlmesh,
}

/// How a generated model is materialised.
struct Kind<'a> {
    incremental: bool,
    /// Columns declared to identify a row.
    grain: &'a [&'a str],
    /// The columns dbt's delete+insert replaces rows by.
    unique_key: &'a [&'a str],
    description: Option<&'a str>,
    tags: &'a [&'a str],
}

impl Flavor {
    /// A reference to another model.
    fn model(self, name: &str) -> String {
        match self {
            Flavor::Hubforge => name.to_string(),
            Flavor::Dbt => format!("{{{{ ref('{name}') }}}}"),
            Flavor::Sqlmesh => format!("synthetic.{name}"),
        }
    }

    /// A reference to a source.
    fn source(self, name: &str) -> String {
        match self {
            Flavor::Hubforge => name.to_string(),
            Flavor::Dbt => format!("{{{{ source('raw', '{name}') }}}}"),
            Flavor::Sqlmesh => format!("raw.{name}"),
        }
    }

    fn var(self, name: &str) -> String {
        match self {
            Flavor::Hubforge | Flavor::Dbt => format!("{{{{ var(\"{name}\") }}}}"),
            Flavor::Sqlmesh => format!("@VAR('{name}')"),
        }
    }

    /// A call of one of the two macros, whose arguments are SQL expressions.
    fn call(self, name: &str, args: &[&str]) -> String {
        match self {
            Flavor::Hubforge | Flavor::Dbt => {
                let args: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
                format!("{{{{ {name}({}) }}}}", args.join(", "))
            }
            Flavor::Sqlmesh => format!("@{name}({})", args.join(", ")),
        }
    }

    /// The condition that keeps the rows of the batch being built: half-open
    /// days for hubforge and dbt, SQLMesh's inclusive interval bounds.
    fn window(self, column: &str, timestamp: bool) -> String {
        match (self, timestamp) {
            (Flavor::Hubforge, _) => {
                format!("{column} >= {{{{ start }}}} AND {column} < {{{{ end }}}}")
            }
            (Flavor::Dbt, _) => format!(
                "{column} >= DATE '{{{{ var(\"start\") }}}}' AND {column} < DATE '{{{{ var(\"end\") }}}}'"
            ),
            (Flavor::Sqlmesh, false) => format!("{column} BETWEEN @start_ds AND @end_ds"),
            (Flavor::Sqlmesh, true) => format!("{column} BETWEEN @start_dt AND @end_dt"),
        }
    }

    /// The part of a model's file before its query.
    fn header(self, name: &str, kind: &Kind, spec: &SynthSpec) -> String {
        match self {
            Flavor::Hubforge => {
                let mut lines = vec![if kind.incremental {
                    let mut l =
                        "kind = \"incremental\"\ntime_column = \"event_date\"\nunit = \"day\""
                            .to_string();
                    if let Some(b) = spec.batch {
                        let _ = write!(l, "\nbatch = {b}");
                    }
                    l
                } else {
                    "kind = \"table\"".to_string()
                }];
                if !kind.grain.is_empty() {
                    lines.push(format!("grain = [{}]", quoted(kind.grain, '"')));
                }
                if let Some(d) = kind.description {
                    lines.push(format!("description = \"{d}\""));
                }
                if !kind.tags.is_empty() {
                    lines.push(format!("tags = [{}]", quoted(kind.tags, '"')));
                }
                format!("/* @hubforge\n{}\n*/\n", lines.join("\n"))
            }
            Flavor::Dbt => {
                // Descriptions are in models/staging/staging.yml.
                let mut args = vec![if kind.incremental {
                    format!(
                        "materialized='incremental', incremental_strategy='delete+insert', unique_key=[{}]",
                        quoted(kind.unique_key, '\'')
                    )
                } else {
                    "materialized='table'".to_string()
                }];
                if !kind.tags.is_empty() {
                    args.push(format!("tags=[{}]", quoted(kind.tags, '\'')));
                }
                format!("{{{{ config({}) }}}}\n", args.join(", "))
            }
            Flavor::Sqlmesh => {
                let mut props = vec![format!("name synthetic.{name}")];
                if kind.incremental {
                    props.push(match spec.batch {
                        Some(b) => format!(
                            "kind INCREMENTAL_BY_TIME_RANGE (time_column event_date, batch_size {b})"
                        ),
                        None => "kind INCREMENTAL_BY_TIME_RANGE (time_column event_date)".to_string(),
                    });
                    props.push(format!("end '{}'", last_day(spec)));
                } else {
                    props.push("kind FULL".to_string());
                }
                if !kind.grain.is_empty() {
                    props.push(format!("grain ({})", kind.grain.join(", ")));
                }
                if let Some(d) = kind.description {
                    props.push(format!("description '{d}'"));
                }
                if !kind.tags.is_empty() {
                    props.push(format!("tags [{}]", kind.tags.join(", ")));
                }
                format!("MODEL (\n  {}\n);\n", props.join(",\n  "))
            }
        }
    }
}

/// `items` quoted with `quote`, separated by commas.
fn quoted(items: &[&str], quote: char) -> String {
    let items: Vec<String> = items.iter().map(|i| format!("{quote}{i}{quote}")).collect();
    items.join(", ")
}

/// The first day of source data.
fn first_day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")
}

/// The day after the last day of source data (the project's exclusive end).
fn end_day(spec: &SynthSpec) -> chrono::NaiveDate {
    first_day() + chrono::Days::new(spec.days.max(1) as u64)
}

/// The last day of source data (SQLMesh's inclusive end).
fn last_day(spec: &SynthSpec) -> chrono::NaiveDate {
    end_day(spec) - chrono::Days::new(1)
}

/// A small deterministic pseudo-random generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The number of staging models: a tenth of all, and at least one per source.
fn staging_count(n: usize, sources: usize) -> usize {
    (n / 10).max(sources).max(1).min(n)
}

/// The layer a generated model sits in.
fn layer_of(i: usize, n: usize, sources: usize) -> usize {
    let stg = staging_count(n, sources);
    let int = (n * 7 / 10).max(stg + 1);
    if i < stg {
        0
    } else if i < int {
        1
    } else {
        2
    }
}

fn model_name(i: usize, n: usize, sources: usize) -> String {
    match layer_of(i, n, sources) {
        0 => format!("stg_{i:05}"),
        1 => format!("int_{i:05}"),
        _ => format!("mart_{i:05}"),
    }
}

/// The two macros, as Jinja for hubforge and dbt.
const JINJA_MACROS: &str = "{% macro safe_ratio(a, b) %}CASE WHEN {{ b }} = 0 THEN NULL ELSE {{ a }} / {{ b }} END{% endmacro %}\n\
     {% macro bucket(col) %}CASE WHEN {{ col }} < 10 THEN 'low' WHEN {{ col }} < 100 THEN 'mid' ELSE 'high' END{% endmacro %}\n";

/// The same two macros as SQLMesh Python macros.
const SQLMESH_MACROS: &str = r#"from sqlmesh import macro


@macro()
def safe_ratio(evaluator, a, b):
    a, b = a.sql(evaluator.dialect), b.sql(evaluator.dialect)
    return f"CASE WHEN {b} = 0 THEN NULL ELSE {a} / {b} END"


@macro()
def bucket(evaluator, col):
    c = col.sql(evaluator.dialect)
    return f"CASE WHEN {c} < 10 THEN 'low' WHEN {c} < 100 THEN 'mid' ELSE 'high' END"
"#;

/// Write a synthetic hubforge project into `dir`.
pub fn generate(dir: &Path, spec: &SynthSpec) -> std::io::Result<()> {
    generate_as(dir, spec, Flavor::Hubforge)
}

/// Write a synthetic project for `flavor` into `dir`. The same `spec` gives
/// the same models, SQL logic and data whatever the flavor.
pub fn generate_as(dir: &Path, spec: &SynthSpec, flavor: Flavor) -> std::io::Result<()> {
    let mut rng = Rng(spec.seed);
    for folder in [
        "models/staging",
        "models/intermediate",
        "models/marts",
        "macros",
        "data",
    ] {
        std::fs::create_dir_all(dir.join(folder))?;
    }
    write_project_files(dir, spec, flavor)?;
    for s in 0..spec.sources {
        write_source_data(&dir.join(format!("data/src_{s:03}.csv")), spec, &mut rng)?;
    }

    let n = spec.models;
    let src = spec.sources;
    let stg = staging_count(n, src);
    for i in 0..n {
        let name = model_name(i, n, src);
        let layer = layer_of(i, n, src);
        let sql = match layer {
            0 => staging_sql(&name, i, spec, flavor, &mut rng),
            _ => {
                // Read 1-3 models of earlier layers, mostly nearby ones.
                let lo = if layer == 1 { 0 } else { stg };
                let hi = if layer == 1 {
                    stg
                } else {
                    (n * 7 / 10).max(stg + 1)
                };
                let pool = i.min(hi).max(lo + 1);
                let k = 1 + rng.below(3);
                let mut parents: Vec<usize> = (0..k).map(|_| lo + rng.below(pool - lo)).collect();
                parents.sort_unstable();
                parents.dedup();
                let parents: Vec<String> = parents.iter().map(|&p| model_name(p, n, src)).collect();
                derived_sql(&name, &parents, spec, flavor, &mut rng)
            }
        };
        let folder = ["staging", "intermediate", "marts"][layer];
        std::fs::write(dir.join(format!("models/{folder}/{name}.sql")), sql)?;
    }
    Ok(())
}

/// The project's configuration, macros and source declarations.
fn write_project_files(dir: &Path, spec: &SynthSpec, flavor: Flavor) -> std::io::Result<()> {
    let sources: Vec<String> = (0..spec.sources).map(|s| format!("src_{s:03}")).collect();
    match flavor {
        Flavor::Hubforge => {
            let mut toml =
                String::from("[project]\nname = \"synthetic\"\nstart = \"2024-01-01\"\n");
            let _ = writeln!(toml, "end = \"{}\"\n", end_day(spec));
            toml.push_str(
                "[warehouse]\npath = \"warehouse.duckdb\"\n\n[vars]\nfactor = 1.1\nmin_amount = 0\n\n",
            );
            for s in &sources {
                let _ = writeln!(
                    toml,
                    "[sources.{s}]\npath = \"data/{s}.csv\"\ntime_column = \"event_time\"\n"
                );
            }
            std::fs::write(dir.join("hubforge.toml"), toml)?;
            std::fs::write(dir.join("macros/util.sql"), JINJA_MACROS)
        }
        Flavor::Dbt => {
            // `start` and `end` are the defaults of the window; a run can set
            // others with --vars.
            std::fs::write(
                dir.join("dbt_project.yml"),
                format!(
                    "name: synthetic\nversion: '1.0'\nconfig-version: 2\nprofile: synthetic\n\
                     model-paths: [models]\nmacro-paths: [macros]\n\n\
                     vars:\n  factor: 1.1\n  min_amount: 0\n  start: '2024-01-01'\n  end: '{}'\n",
                    end_day(spec)
                ),
            )?;
            std::fs::write(
                dir.join("profiles.yml"),
                "synthetic:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: warehouse.duckdb\n      threads: 2\n",
            )?;
            let mut yml = String::from(
                "version: 2\n\nsources:\n  - name: raw\n    config:\n      external_location: \"data/{name}.csv\"\n    tables:\n",
            );
            for s in &sources {
                let _ = writeln!(yml, "      - name: {s}");
            }
            std::fs::write(dir.join("models/sources.yml"), yml)?;
            let mut yml = String::from("version: 2\n\nmodels:\n");
            for i in 0..staging_count(spec.models, spec.sources) {
                let _ = writeln!(
                    yml,
                    "  - name: {}\n    description: \"Staged events of {}\"",
                    model_name(i, spec.models, spec.sources),
                    staged_source(i, spec)
                );
            }
            std::fs::write(dir.join("models/staging/staging.yml"), yml)?;
            std::fs::write(dir.join("macros/util.sql"), JINJA_MACROS)
        }
        Flavor::Sqlmesh => {
            std::fs::write(
                dir.join("config.yaml"),
                "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: warehouse.duckdb\n\
                 default_gateway: local\n\n\
                 model_defaults:\n  dialect: duckdb\n  start: '2024-01-01'\n\n\
                 variables:\n  factor: 1.1\n  min_amount: 0\n",
            )?;
            std::fs::write(dir.join("macros/util.py"), SQLMESH_MACROS)?;
            std::fs::create_dir_all(dir.join("models/raw"))?;
            for s in &sources {
                std::fs::write(
                    dir.join(format!("models/raw/{s}.sql")),
                    format!(
                        "MODEL (\n  name raw.{s},\n  kind SEED (path '../../data/{s}.csv'),\n  \
                         columns (id BIGINT, event_time TIMESTAMP, customer_id BIGINT, category TEXT, amount DOUBLE, quantity BIGINT)\n);\n"
                    ),
                )?;
            }
            Ok(())
        }
    }
}

fn write_source_data(path: &Path, spec: &SynthSpec, rng: &mut Rng) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,event_time,customer_id,category,amount,quantity")?;
    let start = first_day();
    let mut id = 0u64;
    for d in 0..spec.days {
        let day = start + chrono::Days::new(d as u64);
        for r in 0..spec.rows_per_day {
            id += 1;
            let secs = (r * 86_400 / spec.rows_per_day.max(1)) as u32;
            let t = day
                .and_hms_opt(secs / 3600, (secs / 60) % 60, secs % 60)
                .expect("time");
            writeln!(
                out,
                "{id},{},{},{},{}.{:02},{}",
                t.format("%Y-%m-%d %H:%M:%S"),
                rng.below(5000),
                ["a", "b", "c", "d", "e"][rng.below(5)],
                rng.below(500),
                rng.below(100),
                1 + rng.below(9)
            )?;
        }
    }
    out.flush()
}

/// The source that staging model `i` reads.
fn staged_source(i: usize, spec: &SynthSpec) -> String {
    format!("src_{:03}", i % spec.sources.max(1))
}

fn staging_sql(name: &str, i: usize, spec: &SynthSpec, flavor: Flavor, rng: &mut Rng) -> String {
    let source = staged_source(i, spec);
    let filter = if rng.below(2) == 0 {
        format!("AND amount >= {}", flavor.var("min_amount"))
    } else {
        String::new()
    };
    let description = format!("Staged events of {source}");
    let kind = Kind {
        incremental: true,
        grain: &["id"],
        unique_key: &["id"],
        description: Some(&description),
        tags: &["staging"],
    };
    format!(
        "{}SELECT\n    id,\n    CAST(event_time AS DATE) AS event_date,\n    customer_id,\n    upper(category) AS category,\n    amount * {} AS amount,\n    quantity\n\
         FROM {}\nWHERE {}\n  {filter}\n",
        flavor.header(name, &kind, spec),
        flavor.var("factor"),
        flavor.source(&source),
        flavor.window("event_time", true),
    )
}

fn derived_sql(
    name: &str,
    parents: &[String],
    spec: &SynthSpec,
    flavor: Flavor,
    rng: &mut Rng,
) -> String {
    let incremental = rng.below(4) != 0;
    let kind = Kind {
        incremental,
        grain: &[],
        unique_key: &["event_date", "customer_id", "category"],
        description: None,
        tags: &[],
    };
    let window_filter = if incremental {
        format!("WHERE {}", flavor.window("event_date", false))
    } else {
        "WHERE 1 = 1".to_string()
    };
    let mut sql = flavor.header(name, &kind, spec);
    let _ = write!(
        sql,
        "WITH base AS (\n    SELECT event_date, customer_id, category, amount, quantity\n    FROM {}\n    {window_filter}\n)",
        flavor.model(&parents[0])
    );
    for (k, p) in parents.iter().enumerate().skip(1) {
        let _ = write!(
            sql,
            ",\nextra_{k} AS (\n    SELECT event_date, customer_id, sum(amount) AS amount_{k}, count(*) AS n_{k}\n    FROM {}\n    {window_filter}\n    GROUP BY event_date, customer_id\n)",
            flavor.model(p)
        );
    }
    sql.push_str(",\nranked AS (\n    SELECT *, row_number() OVER (PARTITION BY customer_id, event_date ORDER BY amount DESC, category, quantity) AS rn\n    FROM base\n)\n");
    let _ = write!(
        sql,
        "SELECT\n    r.event_date,\n    r.customer_id,\n    r.category,\n    sum(r.amount) AS amount,\n    sum(r.quantity) AS quantity,\n    {} AS amount_bucket,\n    {} AS unit_price",
        flavor.call("bucket", &["sum(r.amount)"]),
        flavor.call("safe_ratio", &["sum(r.amount)", "sum(r.quantity)"])
    );
    for k in 1..parents.len() {
        let _ = write!(sql, ",\n    max(e{k}.amount_{k}) AS amount_{k}");
    }
    sql.push_str("\nFROM ranked AS r");
    for k in 1..parents.len() {
        let _ = write!(
            sql,
            "\nLEFT JOIN extra_{k} AS e{k} ON e{k}.customer_id = r.customer_id AND e{k}.event_date = r.event_date"
        );
    }
    sql.push_str("\nWHERE r.rn <= 100\nGROUP BY r.event_date, r.customer_id, r.category\n");
    sql
}
