//! The Spark engine against a real Spark Connect server: the local one
//! `scripts/spark-connect.sh` starts (pyspark's jars, `local[2]`), started here
//! when it is not running. A server that cannot start fails these tests.
#![cfg(feature = "spark")]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

use hubforge::engine::spark::SparkEngine;
use hubforge::engine::{Engine, Value};

mod common;

/// The URL of a running local server, started once for all tests.
fn server() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let script = common::repo().join("scripts/spark-connect.sh");
        let run = |verb: &str| {
            Command::new("bash")
                .arg(&script)
                .arg(verb)
                .output()
                .expect("bash runs")
        };
        if !run("status").status.success() {
            let started = run("start");
            assert!(
                started.status.success(),
                "the Spark Connect server did not start (Java 17 and Python 3 are needed):\n{}{}",
                String::from_utf8_lossy(&started.stdout),
                String::from_utf8_lossy(&started.stderr)
            );
        }
        let port = std::env::var("SPARK_CONNECT_PORT").unwrap_or_else(|_| "15002".into());
        format!("sc://localhost:{port}")
    })
    .clone()
}

/// A database of its own for one test, dropped when it ends.
struct Scratch {
    engine: SparkEngine,
    db: String,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let engine = SparkEngine::connect(&server()).expect("the server answers");
        let db = format!("hf_{test}_{}", std::process::id());
        let s = engine.session().unwrap();
        s.execute(&format!(
            "DROP DATABASE IF EXISTS {db} CASCADE; CREATE DATABASE {db}"
        ))
        .unwrap();
        Scratch { engine, db }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(s) = self.engine.session() {
            let _ = s.execute(&format!("DROP DATABASE IF EXISTS {} CASCADE", self.db));
        }
    }
}

#[test]
fn values_read_back_as_hubforge_reads_duckdbs() {
    let engine = SparkEngine::connect(&server()).unwrap();
    let s = engine.session().unwrap();
    let rows = s
        .query(
            "SELECT 1 AS i, CAST(2 AS BIGINT) AS b, CAST(2.5 AS DOUBLE) AS f, \
             CAST(12.30 AS DECIMAL(10, 2)) AS d, 'x' AS t, DATE'2024-02-29' AS day, \
             TIMESTAMP_NTZ'2024-01-01 10:00:00' AS ts, TIMESTAMP_NTZ'2024-01-01 10:00:00.25' AS ts2, \
             CAST(NULL AS INT) AS n, true AS yes",
        )
        .unwrap();
    assert_eq!(
        rows.columns,
        ["i", "b", "f", "d", "t", "day", "ts", "ts2", "n", "yes"]
    );
    assert_eq!(
        rows.rows,
        vec![vec![
            Value::Int(1),
            Value::Int(2),
            Value::Float(2.5),
            Value::Text("12.30".into()),
            Value::Text("x".into()),
            Value::Text("2024-02-29".into()),
            Value::Text("2024-01-01 10:00:00".into()),
            Value::Text("2024-01-01 10:00:00.250000".into()),
            Value::Null,
            Value::Bool(true),
        ]]
    );
    // An empty result still names its columns.
    let empty = s.query("SELECT 1 AS a, 'b' AS b WHERE false").unwrap();
    assert_eq!(empty.columns, ["a", "b"]);
    assert!(empty.rows.is_empty());
}

#[test]
fn scripts_run_statement_by_statement_and_errors_name_the_problem() {
    let scratch = Scratch::new("scripts");
    let db = &scratch.db;
    let s = scratch.engine.session().unwrap();
    s.execute(&format!(
        "CREATE TABLE {db}.t (d DATE, x BIGINT) USING parquet;\n\
         -- a comment; with a semicolon\n\
         INSERT INTO {db}.t VALUES (DATE'2024-01-01', 1), (DATE'2024-01-02', 2);\n\
         CREATE OR REPLACE VIEW {db}.v AS SELECT d, x * 10 AS y FROM {db}.t WHERE x > 1;"
    ))
    .unwrap();
    let rows = s.query(&format!("SELECT d, y FROM {db}.v")).unwrap();
    assert_eq!(
        rows.rows,
        vec![vec![Value::Text("2024-01-02".into()), Value::Int(20)]]
    );

    let err = s
        .query(&format!("SELECT * FROM {db}.missing"))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("[TABLE_OR_VIEW_NOT_FOUND]"), "{err}");
    assert!(
        !err.contains("[TABLE_OR_VIEW_NOT_FOUND] [TABLE_OR_VIEW_NOT_FOUND]"),
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");
    // A failing statement stops the script: what follows it does not run.
    let err = s.execute(&format!(
        "INSERT INTO {db}.t VALUES (DATE'2024-01-03', 3); SELECT nope FROM {db}.t; \
         INSERT INTO {db}.t VALUES (DATE'2024-01-04', 4)"
    ));
    assert!(err.is_err());
    let n = s.query(&format!("SELECT count(*) FROM {db}.t")).unwrap();
    assert_eq!(n.rows[0][0], Value::Int(3));
}

#[test]
fn sessions_share_tables_and_keep_their_own_temporary_views() {
    let scratch = Scratch::new("sessions");
    let db = &scratch.db;
    let a = scratch.engine.session().unwrap();
    let b = scratch.engine.session().unwrap();
    a.execute(&format!(
        "CREATE TABLE {db}.shared USING parquet AS SELECT 7 AS x; \
         CREATE TEMPORARY VIEW mine AS SELECT 1 AS y"
    ))
    .unwrap();
    assert_eq!(
        b.query(&format!("SELECT x FROM {db}.shared")).unwrap().rows,
        vec![vec![Value::Int(7)]]
    );
    assert!(a.query("SELECT y FROM mine").is_ok());
    assert!(b.query("SELECT y FROM mine").is_err());
}

#[test]
fn an_interrupt_stops_a_running_statement() {
    let engine = std::sync::Arc::new(SparkEngine::connect(&server()).unwrap());
    let s = engine.session().unwrap();
    let running = std::thread::spawn(move || {
        // Minutes of work on two cores, unless interrupted.
        s.query("SELECT count(*) FROM range(0, 1000000000000) a")
    });
    // Interrupt until the statement has started and stopped.
    while !running.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(200));
        engine.interrupt();
    }
    let result = running.join().unwrap();
    let err = result
        .expect_err("the statement was interrupted")
        .to_string();
    assert!(
        err.to_lowercase().contains("cancel") || err.to_lowercase().contains("interrupt"),
        "{err}"
    );
}

/// Rows as text, for comparing what the two engines return.
fn texts(rows: &hubforge::engine::Rows) -> Vec<Vec<Option<String>>> {
    rows.rows
        .iter()
        .map(|r| r.iter().map(Value::to_text).collect())
        .collect()
}

fn same_value(duck: &Option<String>, spark: &Option<String>) -> bool {
    match (duck, spark) {
        (Some(a), Some(b)) if a != b => match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            _ => false,
        },
        (a, b) => a == b,
    }
}

#[test]
fn translated_constructs_give_duckdbs_results_on_spark() {
    use hubforge::engine::duckdb::DuckDbEngine;
    let duck = DuckDbEngine::in_memory().unwrap();
    let d = duck.session().unwrap();
    let spark = SparkEngine::connect(&server()).unwrap();
    let s = spark.session().unwrap();
    let cases = [
        "SELECT CAST(CAST(date_trunc('month', DATE '2024-02-15') AS DATE) AS VARCHAR) AS m",
        "SELECT CAST(CAST(DATE '2024-02-28' + INTERVAL 1 DAY AS DATE) AS VARCHAR) AS next_day",
        "SELECT strftime(TIMESTAMP '2024-03-05 07:08:09', '%Y-%m-%d %H:%M:%S') AS t",
        "SELECT [10, 20, 30][2] AS second, list_value(1, 2)[1] AS first",
        "SELECT {'a': 1, 'b': 'x'}.b AS field",
        "SELECT 'it''s' || ' ' || 'a\\b' AS quoted",
        "SELECT 7 // 2 AS quotient, 7 % 2 AS remainder, 7 / 2 AS ratio",
        "SELECT date_diff('day', DATE '2024-01-01', DATE '2024-03-01') AS days",
        "SELECT epoch(TIMESTAMP '2024-01-01 00:00:01') AS seconds",
        "SELECT x, count(*) FILTER (WHERE y > 1) AS big FROM (VALUES (1, 2), (1, 0), (2, 5)) t(x, y) GROUP BY x ORDER BY x",
        "SELECT * EXCLUDE (b) FROM (SELECT 1 AS a, 2 AS b, 3 AS c)",
        "SELECT count(*) AS days FROM range(TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-08 00:00:00', INTERVAL 1 DAY) t(d)",
        "SELECT count(*) AS n, min(d), max(d) FROM range(1, 10, 4) t(d)",
        "SELECT count(*) AS none FROM range(5, 1) t(d)",
        "SELECT CAST('12.5' AS DOUBLE) * 2 AS dbl, CAST(3 AS HUGEINT) + 1 AS huge, 5::VARCHAR || 'x' AS txt",
        "SELECT lower('ABC') AS l, upper('x') AS u, substr('C000123', 2) AS s, length('héllo') AS n",
        "SELECT coalesce(NULL, 3) AS c, greatest(1, 5, 3) AS g, least(4, 2) AS l",
        "SELECT d, lead(d) OVER (ORDER BY d) AS next FROM (VALUES (1), (2), (3)) t(d) ORDER BY d",
        "SELECT regexp_matches('abc', 'b.') AS found, 'ABC' ILIKE 'a%' AS like_it",
        "FROM (SELECT 1 AS a) SELECT a + 1 AS b",
        "SELECT unnest(['2024-01-01', '2024-01-02']) AS unit ORDER BY unit",
        // Where Spark's function of the same name computes something else.
        "SELECT concat('a', NULL, 'b', 1) AS c, concat([1], [2])[2] AS l",
        "SELECT dayofweek(DATE '2024-03-03') AS sunday, extract(dow FROM DATE '2024-03-05') AS tuesday, date_part('isodow', DATE '2024-03-03') AS iso",
        "SELECT CAST(DATE '2024-02-28' + INTERVAL 1 DAY AS VARCHAR) AS d, CAST(DATE '2024-01-31' + INTERVAL 1 MONTH AS VARCHAR) AS m, CAST(TIMESTAMP '2024-01-07 10:00:00' - INTERVAL 6 DAY AS VARCHAR) AS t",
        "SELECT regexp_replace('a1b2', '[0-9]', 'X', 'g') AS every",
        "SELECT 'a_c' LIKE 'a\\_c' ESCAPE '\\' AS escaped, 'abc' LIKE 'a\\_c' ESCAPE '\\' AS not_escaped",
        // Spelled otherwise on Spark.
        "SELECT list_contains([1, 2, 3], 2) AS has_two, starts_with('hello', 'he') AS s, ends_with('hello', 'lo') AS e, strpos('hello', 'l') AS p, strpos('hello', 'z') AS none",
        "SELECT arg_max(v, t) AS latest, arg_min(v, t) AS earliest FROM (VALUES ('a', 1), ('b', 3), ('c', 2)) t(v, t)",
        "SELECT CAST(strptime('05/03/2024 07:08', '%d/%m/%Y %H:%M') AS VARCHAR) AS t",
    ];
    for duck_sql in cases {
        let spark_sql = hubforge::sql::spark::to_spark(duck_sql)
            .unwrap_or_else(|e| panic!("{duck_sql}: {e:?}"));
        let expected = texts(&d.query(duck_sql).unwrap());
        let got = texts(
            &s.query(&spark_sql)
                .unwrap_or_else(|e| panic!("{duck_sql}\n  as {spark_sql}\n  {e}")),
        );
        let same = expected.len() == got.len()
            && expected
                .iter()
                .zip(&got)
                .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y)));
        assert!(
            same,
            "{duck_sql}\n  as {spark_sql}\n  DuckDB {expected:?}\n  Spark  {got:?}"
        );
    }
}

/// A copy of the example project whose warehouse is a schema of its own on
/// the test server; its schemas are dropped when the test ends.
struct SparkProject {
    dir: tempfile::TempDir,
    schema: String,
    engine: SparkEngine,
}

/// The schemas hubforge keeps a project in on Spark.
const PARTS: [&str; 4] = ["", "__data", "__sources", "__hubforge"];

impl SparkProject {
    /// A project `make` writes for a `[warehouse]` section on the test
    /// server, in schemas of its own, dropped first.
    fn of(test: &str, make: impl FnOnce(&str) -> tempfile::TempDir) -> SparkProject {
        let schema = format!("hf_{test}_{}", std::process::id());
        let project = SparkProject {
            dir: make(&format!(
                "engine = \"spark\"\nurl = \"{}\"\nschema = \"{schema}\"",
                server()
            )),
            schema,
            engine: SparkEngine::connect(&server()).expect("the server answers"),
        };
        project.drop_schemas();
        project
    }

    /// The example project on the test server.
    fn new(test: &str) -> SparkProject {
        SparkProject::of(test, |warehouse| {
            let dir = common::example_copy();
            common::edit(
                dir.path(),
                "hubforge.toml",
                "path    = \"warehouse.duckdb\"",
                warehouse,
            );
            dir
        })
    }

    fn drop_schemas(&self) {
        let s = self.engine.session().unwrap();
        for part in PARTS {
            s.execute(&format!(
                "DROP DATABASE IF EXISTS `{}{part}` CASCADE",
                self.schema
            ))
            .unwrap();
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SparkProject {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.drop_schemas();
        }
    }
}

/// Run hubforge and require success.
fn run_ok(dir: &std::path::Path, args: &[&str]) -> String {
    let out = common::hubforge(dir, args);
    assert!(
        out.status.success(),
        "hubforge {args:?} failed:\n{}\n{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    common::stdout(&out)
}

/// Every model and seed of the example project.
fn published_names(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(dir.join("models")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "sql") {
            names.push(
                entry
                    .path()
                    .file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    for entry in std::fs::read_dir(dir.join("seeds")).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    names
}

type Table = Vec<Vec<Option<String>>>;

/// The published rows of every model and seed of a DuckDB warehouse, sorted.
fn duck_tables(dir: &std::path::Path) -> BTreeMap<String, Table> {
    let names = published_names(dir);
    duck_tables_named(dir, &names.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The published rows of `names` of a DuckDB warehouse, sorted.
fn duck_tables_named(dir: &std::path::Path, names: &[&str]) -> BTreeMap<String, Table> {
    use hubforge::engine::duckdb::{DuckDbEngine, DuckDbOptions};
    let duck = DuckDbEngine::open(
        &dir.join("warehouse.duckdb"),
        &DuckDbOptions {
            read_only: true,
            ..DuckDbOptions::default()
        },
    )
    .unwrap();
    let d = duck.session().unwrap();
    names
        .iter()
        .map(|&name| {
            let sql = format!("SELECT COLUMNS(*)::VARCHAR FROM main.\"{name}\"");
            let mut rows = texts(&d.query(&sql).unwrap_or_else(|e| panic!("{name}: {e}")));
            rows.sort();
            (name.to_string(), rows)
        })
        .collect()
}

/// The same of a project on Spark.
fn spark_tables(spark: &SparkProject) -> BTreeMap<String, Table> {
    let s = spark.engine.session().unwrap();
    published_names(spark.path())
        .into_iter()
        .map(|name| {
            let sql = format!("SELECT * FROM `{}`.`{name}`", spark.schema);
            let mut rows = texts(&s.query(&sql).unwrap_or_else(|e| panic!("{name}: {e}")));
            rows.sort();
            (name, rows)
        })
        .collect()
}

/// The tables (not the views) of the project's data schema on Spark.
fn data_tables(spark: &SparkProject) -> BTreeSet<String> {
    let s = spark.engine.session().unwrap();
    let names = |what: &str| -> BTreeSet<String> {
        s.query(&format!("SHOW {what} IN `{}__data`", spark.schema))
            .unwrap()
            .rows
            .iter()
            .filter_map(|r| r[1].to_text())
            .collect()
    };
    names("TABLES")
        .difference(&names("VIEWS"))
        .cloned()
        .collect()
}

/// Equal rows, values as text, floating sums to a relative 1e-9.
fn same_rows(a: &Table, b: &Table) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_value(v, w)))
}

/// The published rows of every model and seed, on DuckDB and on Spark, are
/// the same.
fn assert_same_tables(duck_dir: &std::path::Path, spark: &SparkProject, when: &str) {
    let expected = duck_tables(duck_dir);
    let got = spark_tables(spark);
    for (name, rows) in &expected {
        let on_spark = &got[name];
        if !same_rows(rows, on_spark) {
            let first = rows
                .iter()
                .zip(on_spark)
                .find(|(a, b)| !same_rows(&vec![(*a).clone()], &vec![(*b).clone()]));
            panic!(
                "{when}: {name} differs: {} rows on DuckDB, {} on Spark; first difference {first:?}",
                rows.len(),
                on_spark.len()
            );
        }
    }
}

/// What a build's validation found, engine-independent: per model and unit the
/// rows before and after, then findings and audits passed. Distinct counts
/// are estimates (each engine its own) and sums are compared by the tables.
fn validation_digest(report: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for m in report["models"].as_array().expect("validated models") {
        let model = m["model"].as_str().unwrap();
        for u in m["units"].as_array().unwrap() {
            out.push(format!(
                "{model} {} rows {} -> {}",
                u["interval"], u["before"]["rows"], u["after"]["rows"]
            ));
        }
        for f in m["findings"].as_array().unwrap() {
            out.push(format!(
                "{model} finding {} {} blocking={} count={}",
                f["kind"], f["name"], f["blocking"], f["count"]
            ));
        }
        for a in m["passed"].as_array().unwrap() {
            out.push(format!("{model} passed {a}"));
        }
    }
    out.sort();
    out
}

/// Column names and types, integer types as one: a sum of integers is a
/// HUGEINT on DuckDB and a BIGINT on Spark.
fn columns(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            let ty = c["type"].as_str().unwrap();
            let ty = match ty {
                "HUGEINT" | "BIGINT" | "INTEGER" => "integer",
                other => other,
            };
            format!("{} {ty}", c["name"].as_str().unwrap())
        })
        .collect()
}

/// A manifest's products without what each engine measures its own way
/// (checksums, batches, distinct estimates) or what differs by run.
fn manifest_digest(manifest: &serde_json::Value) -> Vec<serde_json::Value> {
    manifest["products"]
        .as_array()
        .expect("products")
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p["name"], "fingerprint": p["fingerprint"], "change": p["change"],
                "full": p["full"], "intervals": p["intervals"], "rows_before": p["rows_before"],
                "rows_after": p["rows_after"], "columns": columns(&p["columns"]),
                "audits_passed": p["validation"]["audits_passed"],
                "destinations": p["destinations"],
            })
        })
        .collect()
}

/// Keys of what `runs`, `intervals` and `fulfillment` print that differ by
/// run or by clock, not by what state holds.
const VARYING: [&str; 7] = [
    "run_id",
    "runs",
    "started_at",
    "finished_at",
    "seconds",
    "at",
    "decision",
];

fn scrub(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for key in VARYING {
                map.remove(key);
            }
            map.values_mut().for_each(scrub);
        }
        serde_json::Value::Array(list) => list.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// What the commands that read state say of a project: its run log, the
/// intervals of three models, the last validation and pending deliveries.
fn state_views(dir: &std::path::Path) -> serde_json::Value {
    let json = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&run_ok(dir, args))
            .unwrap_or_else(|e| panic!("hubforge {args:?}: {e}"))
    };
    let intervals: Vec<serde_json::Value> = ["int_order_revenue", "revenue_daily", "dim_customers"]
        .iter()
        .map(|m| json(&["intervals", m, "--format", "json"]))
        .collect();
    let mut views = serde_json::json!({
        "run_log": json(&["runs", "--format", "json"])["runs"],
        "intervals": intervals,
        "fulfillment": json(&["fulfillment", "--format", "json"])["pending"],
    });
    scrub(&mut views);
    views["validation"] = serde_json::json!(validation_digest(
        &json(&["validation", "--format", "json"])["validation"]
    ));
    views
}

fn assert_same_state_views(duck: &std::path::Path, spark: &std::path::Path, when: &str) {
    let (a, b) = (state_views(duck), state_views(spark));
    assert!(
        a == b,
        "{when}: DuckDB and Spark say different things of state:\n{}\n---\n{}",
        serde_json::to_string_pretty(&a).unwrap(),
        serde_json::to_string_pretty(&b).unwrap()
    );
}

/// The rows of every file `deliver` wrote under `exports/`, sorted.
fn delivered_files(dir: &std::path::Path) -> BTreeMap<String, Table> {
    use hubforge::engine::duckdb::DuckDbEngine;
    let duck = DuckDbEngine::in_memory().unwrap();
    let d = duck.session().unwrap();
    let root = dir.join("exports");
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        let path = entry.path();
        let reader = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => "read_csv",
            Some("parquet") => "read_parquet",
            _ => continue,
        };
        let sql = format!(
            "SELECT COLUMNS(*)::VARCHAR FROM {reader}('{}')",
            path.display()
        );
        let mut rows = texts(&d.query(&sql).unwrap());
        rows.sort();
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        out.insert(name, rows);
    }
    out
}

/// The work of a plan, as both engines must plan it.
fn planned(plan: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    (plan["models"].clone(), plan["out_of_scope"].clone())
}

#[test]
fn the_example_builds_on_spark_as_on_duckdb_through_changes_late_data_and_scoped_builds() {
    let duck = common::example_copy();
    let spark = SparkProject::new("example");
    let both = [duck.path(), spark.path()];
    // A day of orders arrives late, after the first build.
    let late = "data/orders/2025-11.csv";
    let full_text = common::drop_days(duck.path(), late, &["2025-11-14"]);
    common::drop_days(spark.path(), late, &["2025-11-14"]);

    for dir in both {
        run_ok(dir, &["build"]);
    }
    assert_same_tables(duck.path(), &spark, "first build");
    assert_same_state_views(duck.path(), spark.path(), "first build");
    assert!(
        run_ok(spark.path(), &["plan"]).contains("Nothing to do"),
        "a second plan on Spark finds work"
    );

    // A reformatted model: nothing to do on either engine.
    for dir in both {
        common::edit(
            dir,
            "models/staging/stg_payments.sql",
            "FROM raw_payments",
            "FROM   raw_payments   -- reformatted",
        );
    }
    for dir in both {
        assert_eq!(
            common::plan_json(dir, &[])["models"],
            serde_json::json!([]),
            "a reformat plans work"
        );
    }
    // A source day whose change no model passes on (the status's case, which
    // staging lowers): the model over it rebuilds that day, finds it
    // identical to what was published, and its readers are cut off, as on
    // DuckDB.
    let mut runs = Vec::new();
    for dir in both {
        common::edit(dir, "data/orders/2025-10.csv", ",shipped,", ",SHIPPED,");
        let built: serde_json::Value =
            serde_json::from_str(&run_ok(dir, &["build", "--format", "json"])).unwrap();
        let mut cutoff = built["cutoff"].as_array().cloned().unwrap_or_default();
        cutoff.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
        runs.push((cutoff, built["rows_by_model"].clone()));
    }
    assert!(runs[0].0.len() > 3, "{:?}", runs[0]);
    assert_eq!(runs[0], runs[1]);
    assert_eq!(
        runs[1].1,
        serde_json::json!({ "int_orders": runs[1].1["int_orders"] })
    );
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
    assert_same_tables(duck.path(), &spark, "readers cut off");

    // A new column and a WHERE change: the same plan, the same tables.
    for dir in both {
        common::edit(
            dir,
            "models/marts/payments_daily.sql",
            "AS net_amount\n",
            "AS net_amount,\n    count(DISTINCT order_id) AS orders\n",
        );
        common::edit(
            dir,
            "models/marts/payments_daily.sql",
            "WHERE payment_date >=",
            "WHERE method <> 'invoice' AND payment_date >=",
        );
        // Without a grain, distinct rows are counted by a hash of the row.
        common::edit(
            dir,
            "models/marts/payments_daily.sql",
            "grain        = [\"payment_date\", \"method\"]\n",
            "",
        );
    }
    let plan = planned(&common::plan_json(duck.path(), &[]));
    assert_eq!(plan, planned(&common::plan_json(spark.path(), &[])));
    for dir in both {
        run_ok(dir, &["build"]);
    }
    assert_same_tables(duck.path(), &spark, "new column and WHERE change");

    // The pricing fix and the late day: the same plan, the same tables.
    for dir in both {
        common::fix_pricing(dir);
        std::fs::write(dir.join(late), &full_text).unwrap();
    }
    let plan = planned(&common::plan_json(duck.path(), &[]));
    assert_eq!(plan, planned(&common::plan_json(spark.path(), &[])));
    assert!(plan.0.as_array().is_some_and(|m| !m.is_empty()));
    // Validated the same way: the same units, row counts, findings and
    // audits; the same fulfillment manifest.
    let mut validations = Vec::new();
    let mut manifests = Vec::new();
    for dir in both {
        let built: serde_json::Value =
            serde_json::from_str(&run_ok(dir, &["build", "--format", "json"])).unwrap();
        validations.push(validation_digest(&built["validation"]));
        let run = built["run_id"].as_str().unwrap();
        let path = dir.join(format!("target/manifests/{run}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no manifest {}: {e}", path.display()));
        manifests.push(manifest_digest(&serde_json::from_str(&text).unwrap()));
    }
    assert!(validations[0].len() > 10, "{:?}", validations[0]);
    assert_eq!(validations[0], validations[1]);
    assert!(!manifests[0].is_empty());
    assert_eq!(manifests[0], manifests[1]);
    assert_same_tables(duck.path(), &spark, "pricing fix and late day");

    // A change built for one quarter first, then caught up.
    let scope = [
        "--start",
        "2025-10-01",
        "--end",
        "2026-01-01",
        "--select",
        "int_order_revenue+",
    ];
    for dir in both {
        common::change_vat_amount(dir);
    }
    let plan = planned(&common::plan_json(duck.path(), &scope));
    assert_eq!(plan, planned(&common::plan_json(spark.path(), &scope)));
    let mut build_scoped = vec!["build"];
    build_scoped.extend(scope);
    for dir in both {
        run_ok(dir, &build_scoped);
    }
    assert_same_tables(duck.path(), &spark, "scoped build");
    // Partial rebuilds publish their intervals as parts of the model on both
    // engines, the same models: the untouched history was not rewritten.
    let s = spark.engine.session().unwrap();
    let on_spark: BTreeSet<String> = texts(
        &s.query(&format!("SHOW VIEWS IN `{}__data`", spark.schema))
            .unwrap(),
    )
    .into_iter()
    .flatten()
    .flatten()
    .filter_map(|v| v.split_once("__parts_").map(|(model, _)| model.to_string()))
    .collect();
    let on_duckdb: BTreeSet<String> = common::query(
        duck.path(),
        "SELECT DISTINCT model FROM _hubforge.data_parts",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    // Spark's `round(x, 2)` of a DECIMAL(19,2) is a DECIMAL(20,2), DuckDB's
    // keeps the type: on Spark the VAT change changes a column's type, and the
    // untouched rows are copied into one table with the rebuilt ones instead.
    let expected: BTreeSet<String> = ["int_orders", "revenue_daily", "revenue_monthly"]
        .map(String::from)
        .into();
    assert_eq!(on_spark, expected, "models kept in parts on Spark");
    assert!(
        on_spark.is_subset(&on_duckdb),
        "models kept in parts: {on_spark:?} on Spark, {on_duckdb:?} on DuckDB"
    );
    let plan = planned(&common::plan_json(duck.path(), &[]));
    assert_eq!(plan, planned(&common::plan_json(spark.path(), &[])));
    for dir in both {
        run_ok(dir, &["build"]);
    }
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));

    // Converged: equal to a clean DuckDB build of the project as it is now.
    let clean = tempfile::tempdir().unwrap();
    common::copy_tree(duck.path(), clean.path());
    run_ok(clean.path(), &["build"]);
    assert_same_tables(
        clean.path(),
        &spark,
        "after catching up, against a clean build",
    );

    // Decisions are recorded on Spark as on DuckDB: a change of logic marked
    // current for 2024, a destination paused, a run acknowledged for another,
    // then everything pending delivered.
    let mut acks = Vec::new();
    for dir in both {
        common::edit(
            dir,
            "models/marts/revenue_daily.sql",
            "FILTER (WHERE r.is_cancelled)",
            "FILTER (WHERE r.is_cancelled AND r.order_date IS NOT NULL)",
        );
        let marked = run_ok(
            dir,
            &[
                "mark-current",
                "--select",
                "revenue_daily",
                "--end",
                "2025-01-01",
                "--note",
                "same counts in 2024",
            ],
        );
        assert!(marked.contains("revenue_daily"), "{marked}");
        run_ok(
            dir,
            &["fulfillment", "--pause", "finance", "--note", "audit"],
        );
        let runs: serde_json::Value =
            serde_json::from_str(&run_ok(dir, &["runs", "--format", "json"])).unwrap();
        let first = runs["runs"].as_array().unwrap().last().unwrap()["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        acks.push(run_ok(dir, &["ack", &first, "crm"]).replace(&first, "RUN"));
    }
    assert!(acks[0].starts_with("Recorded "), "{}", acks[0]);
    assert_eq!(acks[0], acks[1]);
    assert_eq!(
        planned(&common::plan_json(duck.path(), &[])),
        planned(&common::plan_json(spark.path(), &[]))
    );
    assert_same_state_views(duck.path(), spark.path(), "after the decisions");
    for dir in both {
        run_ok(dir, &["fulfillment", "--resume", "finance"]);
        run_ok(dir, &["deliver"]);
    }
    let (delivered, on_spark) = (delivered_files(duck.path()), delivered_files(spark.path()));
    assert!(delivered.len() > 100, "{} files delivered", delivered.len());
    assert_eq!(
        delivered.keys().collect::<Vec<_>>(),
        on_spark.keys().collect::<Vec<_>>()
    );
    for (file, rows) in &delivered {
        assert!(same_rows(rows, &on_spark[file]), "{file} differs");
    }
    assert_same_state_views(duck.path(), spark.path(), "after delivering");

    // The docs site shows what was built, from the log and Spark's catalog.
    let mut sites = Vec::new();
    for dir in both {
        run_ok(dir, &["docs"]);
        let site = dir.join("target/docs");
        let mut files: Vec<(String, String)> = walkdir::WalkDir::new(&site)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                (
                    e.path().strip_prefix(&site).unwrap().display().to_string(),
                    text,
                )
            })
            .collect();
        files.sort();
        sites.push(files);
    }
    let names = |site: &[(String, String)]| site.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&sites[0]), names(&sites[1]));
    let text: String = sites[1].iter().map(|f| f.1.as_str()).collect();
    // The decision's note, and a type read from Spark's catalog.
    for shown in [
        "same counts in 2024",
        "\"name\":\"net_revenue\",\"type\":\"DECIMAL(18,2)\"",
    ] {
        assert!(text.contains(shown), "the docs site on Spark lacks {shown}");
    }
}

#[test]
fn a_spark_build_killed_while_staging_or_publishing_leaves_each_model_old_or_new_and_the_rerun_converges()
 {
    let spark = SparkProject::new("kill");
    run_ok(spark.path(), &["build"]);
    let old = spark_tables(&spark);
    // What the change gives, built on DuckDB.
    let duck = common::example_copy();
    common::fix_pricing(duck.path());
    run_ok(duck.path(), &["build"]);
    let new = duck_tables(duck.path());
    common::fix_pricing(spark.path());

    // Killed while staging: nothing published, the plan unchanged. While it
    // runs, a second build is refused before it reads or drops anything.
    // Every model it staged is recorded in the log as soon as it is done (a
    // model that takes long enough is, by default).
    let plan = common::plan_json(spark.path(), &[]);
    let data_before = data_tables(&spark);
    let mut first = common::paused_at_with(
        spark.path(),
        "stage:2",
        &["build"],
        &[("HUBFORGE_SPARK_RECORD_AFTER", "0")],
    )
    .unwrap()
    .expect("the build reaches stage:2");
    let second = common::hubforge(spark.path(), &["build"]);
    assert!(!second.status.success(), "two builds ran at once");
    let err = common::stderr(&second);
    assert!(
        err.contains("another command writing this project's state is running on Spark")
            && err.contains("`hubforge build`"),
        "{err}"
    );
    // So is a command that records a decision.
    let pause = common::hubforge(spark.path(), &["fulfillment", "--pause", "finance"]);
    assert!(
        !pause.status.success(),
        "a decision was written beside a build"
    );
    assert!(
        common::stderr(&pause).contains("is running on Spark (`hubforge build`)"),
        "{}",
        common::stderr(&pause)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        spark_tables(&spark),
        old,
        "a build killed while staging published"
    );
    assert_eq!(
        common::plan_json(spark.path(), &[])["models"],
        plan["models"]
    );
    let killed_staged: BTreeSet<String> = data_tables(&spark)
        .difference(&data_before)
        .cloned()
        .collect();
    assert_eq!(killed_staged.len(), 2, "{killed_staged:?}");

    // Killed in the middle of the publish (the views of the five sources and
    // three models swapped): every model is all-old or all-new, some are new.
    common::kill_at(spark.path(), "publish:8", &["build"]);
    let now = spark_tables(&spark);
    let mut changed = 0;
    for (name, rows) in &now {
        let is_old = same_rows(rows, &old[name]);
        let is_new = same_rows(rows, &new[name]);
        assert!(
            is_old || is_new,
            "{name} is neither as before nor as after the change"
        );
        changed += usize::from(!is_old);
    }
    let differ = old
        .keys()
        .filter(|n| !same_rows(&old[*n], &new[*n]))
        .count();
    assert!(
        changed > 0 && changed < differ,
        "{changed} of the {differ} models the change touches were new after the kill"
    );

    // The rerun publishes the rest and converges.
    let out = common::hubforge(spark.path(), &["build"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains("was stopped while publishing"),
        "{}",
        common::stderr(&out)
    );
    assert_same_tables(duck.path(), &spark, "after the rerun");
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
    // The two models the killed run staged were reused, not staged again.
    let data_after = data_tables(&spark);
    assert!(
        killed_staged.is_subset(&data_after),
        "{killed_staged:?} not all in {data_after:?}"
    );
    // What the killed runs staged is gone: one table per table-backed model and seed.
    let s = spark.engine.session().unwrap();
    let on_spark = s
        .query(&format!("SHOW TABLES IN `{}__data`", spark.schema))
        .unwrap()
        .rows
        .len();
    let on_duck = common::scalar(
        duck.path(),
        "SELECT CAST(count(*) AS VARCHAR) FROM information_schema.tables WHERE table_schema = '_hubforge_data'",
    );
    assert_eq!(on_spark.to_string(), on_duck);

    // The pre-merge impact report reads state from the log: the same report
    // as for the same project built on DuckDB.
    let mut reports = Vec::new();
    for dir in [duck.path(), spark.path()] {
        std::fs::write(dir.join(".gitignore"), "warehouse.duckdb*\ntarget/\n").unwrap();
        common::git(dir, &["init", "-q", "-b", "main"]);
        common::git(dir, &["add", "-A"]);
        common::git(dir, &["commit", "-q", "-m", "base"]);
        let sha = common::git(dir, &["rev-parse", "HEAD"]);
        common::change_vat_amount(dir);
        let json = run_ok(dir, &["impact", "--base", &sha, "--format", "json"]);
        reports.push(json.replace(&sha, "[base]"));
    }
    assert_eq!(reports[0], reports[1]);

    // `diff` rebuilds a model from its parents as published and compares it
    // with its published rows: the same report on Spark as on DuckDB for a
    // pending change of values, and nothing written.
    for dir in [duck.path(), spark.path()] {
        common::edit(
            dir,
            "models/intermediate/int_order_lines_priced.sql",
            "l.discount_amount * 0.5",
            "l.discount_amount * 0.25",
        );
    }
    let tables = spark_tables(&spark);
    let whole = ["diff", "int_order_lines_priced", "--format", "json"];
    let month = [
        "diff",
        "int_order_lines_priced",
        "--start",
        "2025-11-01",
        "--end",
        "2025-12-01",
    ];
    let table = ["diff", "dim_customers", "--format", "json"];
    for args in [&whole[..], &month[..], &table[..]] {
        let reports: Vec<String> = [duck.path(), spark.path()]
            .iter()
            .map(|dir| run_ok(dir, args))
            .collect();
        assert_eq!(reports[0], reports[1], "hubforge {args:?}");
    }
    let report: serde_json::Value = serde_json::from_str(&run_ok(spark.path(), &whole)).unwrap();
    assert!(report["changed"].as_i64().unwrap() > 0, "{report}");
    assert_eq!(report["only_published"], 0, "{report}");
    assert_eq!(
        spark_tables(&spark),
        tables,
        "diff changed the published tables"
    );
    assert!(!spark.path().join("warehouse.duckdb").exists());

    // An audit that fails stops the run before anything is published (the
    // change of vat_amount above is pending).
    let audits = "\"not_null(order_net_amount)\"]";
    common::edit(
        spark.path(),
        "models/intermediate/int_order_revenue.sql",
        audits,
        "\"not_null(order_net_amount)\", \"accepted_values(order_id, [1, 2])\"]",
    );
    let data_before = data_tables(&spark);
    let out = common::hubforge(spark.path(), &["build"]);
    assert!(!out.status.success(), "a failing audit published");
    let err = common::stderr(&out);
    assert!(err.contains("accepted_values(order_id, [1, 2])"), "{err}");
    assert_eq!(
        spark_tables(&spark),
        tables,
        "a run stopped by an audit published"
    );
    let staged: BTreeSet<String> = data_tables(&spark)
        .difference(&data_before)
        .cloned()
        .collect();
    assert!(!staged.is_empty());

    // The rerun that waives the audit reuses every model the failed run
    // staged instead of staging it again, and publishes what DuckDB does.
    let built: serde_json::Value = serde_json::from_str(&run_ok(
        spark.path(),
        &[
            "build",
            "--skip-audits",
            "accepted_values",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    assert!(built["reused_batches"].as_u64().unwrap() > 0, "{built}");
    assert_eq!(built["reused_batches"], built["batches"], "{built}");
    // The tables the failed run staged are those published now.
    let after = data_tables(&spark);
    assert!(staged.is_subset(&after), "{staged:?} not all in {after:?}");
    run_ok(duck.path(), &["build"]);
    assert_same_tables(duck.path(), &spark, "the rerun of a failed run");
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
}

#[test]
fn what_cannot_run_on_spark_is_a_diagnostic_at_the_model_line_before_anything_runs() {
    let spark = SparkProject::new("untranslatable");
    common::edit(
        spark.path(),
        "models/staging/stg_payments.sql",
        "FROM raw_payments",
        "FROM raw_payments\nQUALIFY row_number() OVER (PARTITION BY payment_id ORDER BY paid_at) = 1",
    );
    // `check` knows the project's engine; `build` refuses before it starts.
    for args in [&["check"][..], &["build"]] {
        let out = common::hubforge(spark.path(), args);
        assert!(!out.status.success(), "{args:?} accepted QUALIFY on Spark");
        let err = common::stderr(&out);
        assert!(err.contains("QUALIFY"), "{args:?}: {err}");
        assert!(
            err.contains("models/staging/stg_payments.sql:17"),
            "{args:?}: {err}"
        );
    }
    // Nothing was written to the warehouse (its schemas do not exist).
    let s = spark.engine.session().unwrap();
    let tables = s
        .query(&format!("SHOW TABLES IN `{}__data`", spark.schema))
        .map_or(0, |r| r.rows.len());
    assert_eq!(tables, 0);
}

/// A project with one daily model over a table source `table`, its warehouse
/// in `warehouse` (DuckDB's settings, or Spark's).
fn table_source_project(table: &str, warehouse: &str) -> tempfile::TempDir {
    common::project_of(&[
        (
            "hubforge.toml",
            &format!(
                "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-01-04\"\n\n\
                 [warehouse]\n{warehouse}\n\n\
                 [sources.legacy_orders]\ntable = \"{table}\"\ntime_column = \"ordered_at\"\n"
            ),
        ),
        (
            "models/daily.sql",
            &format!(
                "/* @hubforge\nkind = \"incremental\"\ntime_column = \"day\"\nunit = \"day\"\n*/\n\
                 SELECT CAST(ordered_at AS DATE) AS day, count(*) AS orders, sum(amount) AS amount\n\
                 FROM {table}\nWHERE ordered_at >= {{{{ start }}}} AND ordered_at < {{{{ end }}}}\n\
                 GROUP BY 1\n"
            ),
        ),
    ])
}

#[test]
fn a_table_source_is_read_and_snapshotted_by_spark_and_plans_as_on_duckdb() {
    // The same rows in a table of each warehouse.
    let duck = table_source_project("legacy.orders", "path = \"warehouse.duckdb\"");
    {
        let conn = duckdb::Connection::open(duck.path().join("warehouse.duckdb")).unwrap();
        conn.execute_batch(
            "CREATE SCHEMA legacy; CREATE TABLE legacy.orders AS \
             SELECT TIMESTAMP '2025-01-01 10:00:00' + INTERVAL (i % 3) DAY AS ordered_at, \
             i AS amount FROM range(30) t(i);",
        )
        .unwrap();
    }
    let raw = Scratch::new("legacy");
    let spark = SparkProject::of("tables", |warehouse| {
        table_source_project(&format!("{}.orders", raw.db), warehouse)
    });
    let s = raw.engine.session().unwrap();
    s.execute(&format!(
        "CREATE TABLE {}.orders USING parquet AS \
         SELECT timestampadd(DAY, id % 3, TIMESTAMP'2025-01-01 10:00:00') AS ordered_at, \
         id AS amount FROM range(30)",
        raw.db
    ))
    .unwrap();
    let daily = |dir: &std::path::Path| -> Table {
        if dir == duck.path() {
            duck_tables_named(dir, &["daily"]).remove("daily").unwrap()
        } else {
            let mut rows = texts(
                &s.query(&format!("SELECT * FROM `{}`.`daily`", spark.schema))
                    .unwrap(),
            );
            rows.sort();
            rows
        }
    };
    let both = [duck.path(), spark.path()];
    for dir in both {
        run_ok(dir, &["build"]);
    }
    assert_eq!(daily(duck.path()).len(), 3);
    assert!(same_rows(&daily(duck.path()), &daily(spark.path())));
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));

    // A row arriving late in both tables at `at`.
    let late = |at: &str, amount: i64| {
        d_execute(
            duck.path(),
            &format!("INSERT INTO legacy.orders VALUES (TIMESTAMP '{at}', {amount})"),
        );
        s.execute(&format!(
            "INSERT INTO {}.orders VALUES (TIMESTAMP'{at}', {amount})",
            raw.db
        ))
        .unwrap();
    };
    // Both engines plan exactly `day` and, built, converge to equal tables.
    let plan_one_day_and_build = |day: [&str; 2]| {
        let plan = planned(&common::plan_json(duck.path(), &[]));
        assert_eq!(plan.0[0]["intervals"], serde_json::json!([day]), "{plan:?}");
        assert_eq!(plan, planned(&common::plan_json(spark.path(), &[])));
        for dir in both {
            run_ok(dir, &["build"]);
        }
        assert!(same_rows(&daily(duck.path()), &daily(spark.path())));
        assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
    };

    // A late row in the table: Spark's snapshot finds the one day it falls
    // in, as DuckDB's does.
    late("2025-01-02 12:00:00", 100);
    plan_one_day_and_build(["2025-01-02", "2025-01-03"]);

    // Declared types, or a table that is not there: errors at the source's
    // lines in hubforge.toml.
    let toml = std::fs::read_to_string(spark.path().join("hubforge.toml")).unwrap();
    let plan_fails = |says: &str| {
        let out = common::hubforge(spark.path(), &["plan"]);
        assert!(!out.status.success());
        let err = common::stderr(&out);
        assert!(err.contains(says), "{err}");
        assert!(err.contains("hubforge.toml:"), "{err}");
    };
    std::fs::write(
        spark.path().join("hubforge.toml"),
        toml.replacen(
            "time_column = \"ordered_at\"",
            "time_column = \"ordered_at\"\ncolumns = { amount = \"DOUBLE\" }",
            1,
        ),
    )
    .unwrap();
    plan_fails("takes no `columns`");
    std::fs::write(spark.path().join("hubforge.toml"), &toml).unwrap();
    s.execute(&format!(
        "ALTER TABLE {0}.orders RENAME TO {0}.orders_away",
        raw.db
    ))
    .unwrap();
    plan_fails("Spark cannot read the table");
    s.execute(&format!(
        "ALTER TABLE {0}.orders_away RENAME TO {0}.orders",
        raw.db
    ))
    .unwrap();

    // A build that died on another machine holds the lock until a build
    // breaks it.
    s.execute(&format!(
        "INSERT INTO `{}__hubforge`.state_log VALUES (1000, 'lock-elsewhere', 'lock', 1, \
         '{{\"host\":\"elsewhere\",\"pid\":1,\"start\":null,\"user\":\"ci\",\
         \"since\":\"2026-01-01 00:00:00 UTC\"}}', current_timestamp())",
        spark.schema
    ))
    .unwrap();
    let out = common::hubforge(spark.path(), &["build"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("by ci on elsewhere (pid 1)"), "{err}");
    assert!(err.contains("--break-lock"), "{err}");
    run_ok(spark.path(), &["build", "--break-lock"]);
    run_ok(spark.path(), &["build"]);

    // The state log replayed from a snapshot: a build that finds the log grown
    // writes the whole state as one entry, and every command reads from there.
    late("2025-01-03 08:00:00", 200);
    run_ok(duck.path(), &["build"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .arg("build")
        .current_dir(spark.path())
        .env("HUBFORGE_PLAIN", "1")
        .env("HUBFORGE_SPARK_SNAPSHOT_EVERY", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let snapshots = s
        .query(&format!(
            "SELECT count(*) FROM `{}__hubforge`.state_log WHERE kind = 'snapshot'",
            spark.schema
        ))
        .unwrap();
    assert_eq!(texts(&snapshots), [[Some("1".to_string())]]);
    assert!(same_rows(&daily(duck.path()), &daily(spark.path())));
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
    // What was built before the snapshot is known after it: one late row
    // plans its one day, as on DuckDB.
    late("2025-01-03 08:00:00", 300);
    plan_one_day_and_build(["2025-01-03", "2025-01-04"]);
}

/// Run statements on a DuckDB warehouse of a test.
fn d_execute(dir: &std::path::Path, sql: &str) {
    duckdb::Connection::open(dir.join("warehouse.duckdb"))
        .unwrap()
        .execute_batch(sql)
        .unwrap();
}

#[test]
fn a_view_over_a_rebuilt_model_or_a_changed_source_takes_its_new_types_on_spark() {
    // Spark keeps the column types a view was created with: a view summing an
    // integer column would go on casting the sum of the new decimals to an
    // integer (12 for 12.1) unless publishing creates it again.
    let spark = SparkProject::of("view_types", common::view_types_project);
    let total = |view: &str| {
        let s = spark.engine.session().unwrap();
        let rows = s
            .query(&format!(
                "SELECT CAST(total AS STRING) FROM `{}`.{view}",
                spark.schema
            ))
            .unwrap();
        texts(&rows)
    };
    let overall = || total("overall");
    run_ok(spark.path(), &["build"]);
    assert_eq!(overall(), [[Some("11".to_string())]]);
    common::edit(
        spark.path(),
        "models/monthly.sql",
        "sum(value)",
        "sum(round(value * 1.1, 1))",
    );
    run_ok(spark.path(), &["build"]);
    assert_eq!(overall(), [[Some("12.1".to_string())]]);
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));

    // So does a view over a source whose schema changed (accepted).
    assert_eq!(total("raw_total"), [[Some("11".to_string())]]);
    std::fs::write(
        spark.path().join("data/events.csv"),
        "event_time,value\n2025-01-03 10:00:00,4.5\n2025-02-05 11:00:00,7\n",
    )
    .unwrap();
    run_ok(spark.path(), &["build", "--accept-schema", "events"]);
    assert_eq!(total("raw_total"), [[Some("11.5".to_string())]]);
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
}

fn file_source_project(path: &str, warehouse: &str) -> tempfile::TempDir {
    common::project_of(&[
        (
            "hubforge.toml",
            &format!(
                "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-01-04\"\n\n\
                 [warehouse]\n{warehouse}\n\n\
                 [sources.orders]\npath = \"{path}\"\ntime_column = \"ordered_at\"\n\
                 columns = {{ amount = \"BIGINT\" }}\n"
            ),
        ),
        (
            "models/daily.sql",
            "/* @hubforge\nkind = \"incremental\"\ntime_column = \"day\"\nunit = \"day\"\n*/\n\
             SELECT CAST(ordered_at AS DATE) AS day, count(*) AS orders, sum(amount) AS amount\n\
             FROM orders\nWHERE ordered_at >= {{ start }} AND ordered_at < {{ end }}\n\
             GROUP BY 1\n",
        ),
    ])
}

#[test]
fn files_only_the_cluster_sees_are_listed_typed_and_snapshotted_by_spark() {
    // The same files under a DuckDB project and at a `file://` URL outside the
    // Spark project, which hubforge leaves to Spark to list and read.
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}/orders/*.csv", remote.path().display());
    let duck = file_source_project("data/orders/*.csv", "path = \"warehouse.duckdb\"");
    let spark = SparkProject::of("cluster_files", |warehouse| {
        file_source_project(&url, warehouse)
    });
    let write_both = |file: &str, text: &str| {
        for dir in [
            duck.path().join("data/orders"),
            remote.path().join("orders"),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), text).unwrap();
        }
    };
    write_both(
        "2025-01-01.csv",
        "ordered_at,amount\n2025-01-01 10:00:00,5\n2025-01-01 18:30:00,7\n",
    );
    write_both(
        "2025-01-02.csv",
        "ordered_at,amount\n2025-01-02 09:00:00,11\n2025-01-02 23:59:59,13\n",
    );
    let s = spark.engine.session().unwrap();
    let daily = |dir: &std::path::Path| -> Table {
        if dir == duck.path() {
            duck_tables_named(dir, &["daily"]).remove("daily").unwrap()
        } else {
            let mut rows = texts(
                &s.query(&format!("SELECT * FROM `{}`.`daily`", spark.schema))
                    .unwrap(),
            );
            rows.sort();
            rows
        }
    };
    let both = [duck.path(), spark.path()];
    for dir in both {
        run_ok(dir, &["build"]);
    }
    assert_eq!(daily(duck.path()).len(), 2);
    assert!(same_rows(&daily(duck.path()), &daily(spark.path())));
    assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
    // The type Spark infers (TIMESTAMP), and the declared one in place of
    // the one it infers (INT).
    let described = s
        .query(&format!("DESCRIBE `{}__sources`.`orders`", spark.schema))
        .unwrap();
    assert_eq!(
        texts(&described)
            .into_iter()
            .map(|r| r[1].clone().unwrap())
            .collect::<Vec<_>>(),
        ["timestamp", "bigint"]
    );

    let plan_one_day_and_build = |day: [&str; 2]| {
        let plan = planned(&common::plan_json(duck.path(), &[]));
        assert_eq!(plan.0[0]["intervals"], serde_json::json!([day]), "{plan:?}");
        assert_eq!(plan, planned(&common::plan_json(spark.path(), &[])));
        for dir in both {
            run_ok(dir, &["build"]);
        }
        assert!(same_rows(&daily(duck.path()), &daily(spark.path())));
        assert!(run_ok(spark.path(), &["plan"]).contains("Nothing to do"));
    };
    // A row arriving late in a file: Spark lists the changed file and its
    // snapshot finds the one day the row falls in.
    write_both(
        "2025-01-02.csv",
        "ordered_at,amount\n2025-01-02 09:00:00,11\n2025-01-02 23:59:59,13\n\
         2025-01-02 12:00:00,100\n",
    );
    plan_one_day_and_build(["2025-01-02", "2025-01-03"]);
    // A new file.
    write_both(
        "2025-01-03.csv",
        "ordered_at,amount\n2025-01-03 08:00:00,1\n",
    );
    plan_one_day_and_build(["2025-01-03", "2025-01-04"]);

    // Every column declared: Spark reads only the header for the names. The
    // source is read another way, so the whole model is planned again.
    let toml = std::fs::read_to_string(spark.path().join("hubforge.toml")).unwrap();
    std::fs::write(
        spark.path().join("hubforge.toml"),
        toml.replace(
            "columns = { amount = \"BIGINT\" }",
            "columns = { ordered_at = \"TIMESTAMP\", amount = \"BIGINT\" }",
        ),
    )
    .unwrap();
    let plan = planned(&common::plan_json(spark.path(), &[]));
    assert_eq!(
        plan.0[0]["intervals"],
        serde_json::json!([["2025-01-01", "2025-01-04"]]),
        "{plan:?}"
    );
    std::fs::write(spark.path().join("hubforge.toml"), &toml).unwrap();

    // A row that does not read with the declared types: Spark names it and
    // nothing published changes.
    let before = daily(spark.path());
    std::fs::write(
        remote.path().join("orders/2025-01-03.csv"),
        "ordered_at,amount\n2025-01-03 08:00:00,1\n2025-01-03 09:00:00,lots\n",
    )
    .unwrap();
    let out = common::hubforge(spark.path(), &["build"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("reading source `orders`"), "{err}");
    assert!(err.contains("2025-01-03.csv"), "{err}");
    assert!(
        err.contains("may not read with the source's column types"),
        "{err}"
    );
    assert_eq!(daily(spark.path()), before);

    // No files at the path: an error at the source in hubforge.toml.
    std::fs::rename(remote.path().join("orders"), remote.path().join("away")).unwrap();
    let out = common::hubforge(spark.path(), &["plan"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("Spark finds no files at `file://"), "{err}");
    assert!(err.contains("hubforge.toml:"), "{err}");

    // Embedded DuckDB refuses such a path before reading anything.
    let on_duckdb = file_source_project(&url, "path = \"warehouse.duckdb\"");
    let out = common::hubforge(on_duckdb.path(), &["check"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(err.contains("a path only a Spark cluster reads"), "{err}");
    assert!(err.contains("hubforge.toml:10"), "{err}");
}

fn json_project(remote: &str, warehouse: &str) -> tempfile::TempDir {
    let daily = |source: &str| {
        format!(
            "/* @hubforge\nkind = \"incremental\"\ntime_column = \"day\"\nunit = \"day\"\n*/\n\
             SELECT CAST(event_time AS DATE) AS day, count(*) AS events, sum(amount) AS amount\n\
             FROM {source}\nWHERE event_time >= {{{{ start }}}} AND event_time < {{{{ end }}}}\nGROUP BY 1\n"
        )
    };
    common::project_of(&[
        (
            "hubforge.toml",
            &format!(
                "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-01-04\"\n\n\
                 [warehouse]\n{warehouse}\n\n\
                 [sources.events]\npath = \"data/events/*.json\"\ntime_column = \"event_time\"\n\
                 columns = {{ event_time = \"TIMESTAMP\", amount = \"DECIMAL(18,2)\" }}\n\n\
                 [sources.remote_events]\npath = \"{remote}\"\ntime_column = \"event_time\"\n\n\
                 [sources.parts]\npath = \"data/parts.parquet\"\n\
                 columns = {{ part = \"VARCHAR\", price = \"DECIMAL(18,2)\" }}\n"
            ),
        ),
        (
            "models/parts_total.sql",
            "SELECT count(*) AS parts, sum(price) AS price FROM parts\n",
        ),
        ("models/daily.sql", &daily("events")),
        ("models/remote_daily.sql", &daily("remote_events")),
        // Whole documents: an array on one line, and one over several lines;
        // amounts as text and as numbers, cast to the declared DECIMAL.
        (
            "data/events/a.json",
            "[{\"event_time\": \"2025-01-01 10:00:00\", \"amount\": \"10.50\"}, \
             {\"event_time\": \"2025-01-02 11:00:00\", \"amount\": 4.25}]\n",
        ),
        (
            "data/events/b.json",
            "[\n  {\"event_time\": \"2025-01-02 12:00:00\", \"amount\": 1.25},\n  \
             {\"event_time\": \"2025-01-03 09:30:00\", \"amount\": \"2\"}\n]\n",
        ),
    ])
}

#[test]
fn json_and_parquet_sources_read_on_spark_as_on_duckdb_here_and_at_a_cluster_path() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}/*.jsonl", remote.path().display());
    let duck = json_project("data/remote/*.jsonl", "path = \"warehouse.duckdb\"");
    let spark = SparkProject::of("json", |warehouse| json_project(&url, warehouse));
    let write_remote = |text: &str| {
        std::fs::create_dir_all(duck.path().join("data/remote")).unwrap();
        std::fs::write(duck.path().join("data/remote/e.jsonl"), text).unwrap();
        std::fs::write(remote.path().join("e.jsonl"), text).unwrap();
    };
    write_remote(
        "{\"event_time\": \"2025-01-01T08:00:00\", \"amount\": 1.5}\n\
         {\"event_time\": \"2025-01-03T08:00:00\", \"amount\": 2.25}\n",
    );
    // A Parquet file whose DOUBLE prices are declared DECIMAL.
    for dir in [duck.path(), spark.path()] {
        duckdb::Connection::open_in_memory()
            .unwrap()
            .execute_batch(&format!(
                "COPY (SELECT 'p' || i AS part, i * 0.5 AS price FROM range(10) t(i)) \
                 TO '{}' (FORMAT parquet)",
                dir.join("data/parts.parquet").display()
            ))
            .unwrap();
    }
    let s = spark.engine.session().unwrap();
    let tables = |dir: &std::path::Path| -> BTreeMap<String, Table> {
        if dir == duck.path() {
            return duck_tables_named(dir, &["daily", "remote_daily", "parts_total"]);
        }
        ["daily", "remote_daily", "parts_total"]
            .iter()
            .map(|t| {
                let mut rows = texts(
                    &s.query(&format!("SELECT * FROM `{}`.`{t}`", spark.schema))
                        .unwrap(),
                );
                rows.sort();
                (t.to_string(), rows)
            })
            .collect()
    };
    let same = |when: &str| {
        let (d, sp) = (tables(duck.path()), tables(spark.path()));
        for (name, rows) in &d {
            assert!(
                same_rows(rows, &sp[name]),
                "{when}: {name}\n{rows:?}\n{:?}",
                sp[name]
            );
        }
        assert!(
            run_ok(spark.path(), &["plan"]).contains("Nothing to do"),
            "{when}"
        );
    };
    for dir in [duck.path(), spark.path()] {
        run_ok(dir, &["build"]);
    }
    assert_eq!(tables(duck.path())["daily"].len(), 3);
    same("first build");
    // The declared type, not the file's DOUBLE, on both engines.
    let described = s
        .query(&format!("DESCRIBE `{}__sources`.`parts`", spark.schema))
        .unwrap();
    assert_eq!(texts(&described)[1][1].as_deref(), Some("decimal(18,2)"));
    assert_eq!(
        common::query(duck.path(), "SELECT typeof(price) FROM parts_total"),
        [["DECIMAL(38,2)"]]
    );

    // A late event in the file at the cluster path: the day it falls in.
    write_remote(
        "{\"event_time\": \"2025-01-01T08:00:00\", \"amount\": 1.5}\n\
         {\"event_time\": \"2025-01-03T08:00:00\", \"amount\": 2.25}\n\
         {\"event_time\": \"2025-01-02T23:00:00\", \"amount\": 0.75}\n",
    );
    let plan = planned(&common::plan_json(duck.path(), &[]));
    assert_eq!(
        plan.0[0]["intervals"],
        serde_json::json!([["2025-01-02", "2025-01-03"]]),
        "{plan:?}"
    );
    assert_eq!(plan, planned(&common::plan_json(spark.path(), &[])));
    for dir in [duck.path(), spark.path()] {
        run_ok(dir, &["build"]);
    }
    same("after a late event");

    // A file of the other kind: an error naming both, and nothing published
    // changes.
    let before = tables(spark.path());
    std::fs::write(
        spark.path().join("data/events/c.json"),
        "{\"event_time\": \"2025-01-03 10:00:00\", \"amount\": 1}\n",
    )
    .unwrap();
    let out = common::hubforge(spark.path(), &["build"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("Spark reads the JSON files of a source all one way"),
        "{err}"
    );
    assert!(err.contains("c.json holds one object per line"), "{err}");
    assert_eq!(tables(spark.path()), before);
}

#[test]
fn bad_rows_are_kept_out_on_spark_as_on_duckdb_and_rows_spark_reads_otherwise_stop_the_build() {
    let quarantined = |dir: &std::path::Path| {
        common::edit(
            dir,
            "hubforge.toml",
            "columns = { amount = \"BIGINT\" }",
            "columns = { amount = \"BIGINT\" }\non_bad_rows = \"quarantine\"",
        );
    };
    let duck = file_source_project("data/orders/*.csv", "path = \"warehouse.duckdb\"");
    let spark = SparkProject::of("bad_rows", |warehouse| {
        file_source_project("data/orders/*.csv", warehouse)
    });
    let write_both = |text: &str| {
        for dir in [duck.path(), spark.path()] {
            std::fs::create_dir_all(dir.join("data/orders")).unwrap();
            std::fs::write(dir.join("data/orders/a.csv"), text).unwrap();
        }
    };
    quarantined(duck.path());
    quarantined(spark.path());
    write_both(
        "ordered_at,amount\n2025-01-01 10:00:00,5\n2025-01-02 10:00:00,lots\n\
         2025-01-02 11:00:00,7\n",
    );
    let s = spark.engine.session().unwrap();
    let daily = || {
        let mut rows = texts(
            &s.query(&format!("SELECT * FROM `{}`.`daily`", spark.schema))
                .unwrap(),
        );
        rows.sort();
        rows
    };
    // The same row kept out by both, and said where it is kept.
    let said = run_ok(duck.path(), &["build"]);
    assert!(said.contains("see _hubforge_rejects.orders"), "{said}");
    assert!(
        said.contains("incomplete: 2025-01-02..2025-01-03"),
        "{said}"
    );
    let said = run_ok(spark.path(), &["build"]);
    let rejects = format!("{}__hubforge.rejects__orders", spark.schema);
    assert!(said.contains(&format!("see {rejects}")), "{said}");
    assert!(
        said.contains("incomplete: 2025-01-02..2025-01-03"),
        "{said}"
    );
    let duck_daily = duck_tables_named(duck.path(), &["daily"])
        .remove("daily")
        .unwrap();
    assert!(same_rows(&duck_daily, &daily()));
    let kept = s
        .query(&format!(
            "SELECT file, line, row_text FROM {}",
            rejects
                .split('.')
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(".")
        ))
        .unwrap();
    assert_eq!(
        texts(&kept),
        [[
            Some("data/orders/a.csv".to_string()),
            Some("3".to_string()),
            Some("2025-01-02 10:00:00,lots".to_string())
        ]]
    );

    // A value DuckDB reads and Spark's CSV reader drops (a space before a
    // number): the engines would differ, so the Spark build stops and
    // nothing published changes.
    let before = daily();
    write_both(
        "ordered_at,amount\n2025-01-01 10:00:00,5\n2025-01-02 10:00:00,lots\n\
         2025-01-02 11:00:00,7\n2025-01-03 11:00:00, 9\n",
    );
    run_ok(duck.path(), &["build"]);
    let out = common::hubforge(spark.path(), &["build"]);
    assert!(!out.status.success());
    let err = common::stderr(&out);
    assert!(
        err.contains("Spark reads 2 rows from its files where hubforge read 3"),
        "{err}"
    );
    assert!(err.contains("hubforge.toml:"), "{err}");
    assert_eq!(daily(), before);
}
