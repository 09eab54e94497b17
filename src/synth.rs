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
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            models: 1000,
            sources: 10,
            days: 0,
            rows_per_day: 0,
            seed: 42,
        }
    }
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

/// Write a synthetic project into `dir`.
pub fn generate(dir: &Path, spec: &SynthSpec) -> std::io::Result<()> {
    let mut rng = Rng(spec.seed);
    std::fs::create_dir_all(dir.join("models/staging"))?;
    std::fs::create_dir_all(dir.join("models/intermediate"))?;
    std::fs::create_dir_all(dir.join("models/marts"))?;
    std::fs::create_dir_all(dir.join("macros"))?;
    std::fs::create_dir_all(dir.join("data"))?;

    let mut toml = String::from("[project]\nname = \"synthetic\"\nstart = \"2024-01-01\"\n");
    let end_day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date")
        + chrono::Days::new(spec.days.max(1) as u64);
    let _ = writeln!(toml, "end = \"{end_day}\"\n");
    toml.push_str(
        "[warehouse]\npath = \"warehouse.duckdb\"\n\n[vars]\nfactor = 1.1\nmin_amount = 0\n\n",
    );
    for s in 0..spec.sources {
        let _ = writeln!(
            toml,
            "[sources.src_{s:03}]\npath = \"data/src_{s:03}.csv\"\ntime_column = \"event_time\"\n"
        );
    }
    std::fs::write(dir.join("hubforge.toml"), toml)?;
    std::fs::write(
        dir.join("macros/util.sql"),
        "{% macro safe_ratio(a, b) %}CASE WHEN {{ b }} = 0 THEN NULL ELSE {{ a }} / {{ b }} END{% endmacro %}\n\
         {% macro bucket(col) %}CASE WHEN {{ col }} < 10 THEN 'low' WHEN {{ col }} < 100 THEN 'mid' ELSE 'high' END{% endmacro %}\n",
    )?;
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
            0 => staging_sql(i, spec, &mut rng),
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
                derived_sql(
                    &parents
                        .iter()
                        .map(|&p| model_name(p, n, src))
                        .collect::<Vec<_>>(),
                    &mut rng,
                )
            }
        };
        let folder = ["staging", "intermediate", "marts"][layer];
        std::fs::write(dir.join(format!("models/{folder}/{name}.sql")), sql)?;
    }
    Ok(())
}

fn write_source_data(path: &Path, spec: &SynthSpec, rng: &mut Rng) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,event_time,customer_id,category,amount,quantity")?;
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
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

fn staging_sql(i: usize, spec: &SynthSpec, rng: &mut Rng) -> String {
    let source = format!("src_{:03}", i % spec.sources.max(1));
    let filter = if rng.below(2) == 0 {
        "AND amount >= {{ var(\"min_amount\") }}"
    } else {
        ""
    };
    format!(
        "/* @hubforge\nkind = \"incremental\"\ntime_column = \"event_date\"\nunit = \"day\"\nbatch = 366\ngrain = [\"id\"]\ndescription = \"Staged events of {source}\"\ntags = [\"staging\"]\n*/\n\
         SELECT\n    id,\n    CAST(event_time AS DATE) AS event_date,\n    customer_id,\n    upper(category) AS category,\n    amount * {{{{ var(\"factor\") }}}} AS amount,\n    quantity\n\
         FROM {source}\nWHERE event_time >= {{{{ start }}}} AND event_time < {{{{ end }}}}\n  {filter}\n"
    )
}

fn derived_sql(parents: &[String], rng: &mut Rng) -> String {
    let incremental = rng.below(4) != 0;
    let header = if incremental {
        "/* @hubforge\nkind = \"incremental\"\ntime_column = \"event_date\"\nunit = \"day\"\nbatch = 366\n*/\n".to_string()
    } else {
        "/* @hubforge\nkind = \"table\"\n*/\n".to_string()
    };
    let window_filter = if incremental {
        "WHERE event_date >= {{ start }} AND event_date < {{ end }}"
    } else {
        "WHERE 1 = 1"
    };
    let first = &parents[0];
    let mut sql = header;
    let _ = write!(
        sql,
        "WITH base AS (\n    SELECT event_date, customer_id, category, amount, quantity\n    FROM {first}\n    {window_filter}\n)"
    );
    for (k, p) in parents.iter().enumerate().skip(1) {
        let _ = write!(
            sql,
            ",\nextra_{k} AS (\n    SELECT event_date, customer_id, sum(amount) AS amount_{k}, count(*) AS n_{k}\n    FROM {p}\n    {window_filter}\n    GROUP BY event_date, customer_id\n)"
        );
    }
    sql.push_str(",\nranked AS (\n    SELECT *, row_number() OVER (PARTITION BY customer_id, event_date ORDER BY amount DESC, category, quantity) AS rn\n    FROM base\n)\n");
    sql.push_str("SELECT\n    r.event_date,\n    r.customer_id,\n    r.category,\n    sum(r.amount) AS amount,\n    sum(r.quantity) AS quantity,\n    {{ bucket('sum(r.amount)') }} AS amount_bucket,\n    {{ safe_ratio('sum(r.amount)', 'sum(r.quantity)') }} AS unit_price");
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
