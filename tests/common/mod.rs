//! Helpers shared by the integration tests: run the real binary, copy fixture
//! projects into temporary directories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// The real binary with `args`, run in `dir`.
pub fn hubforge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args(args)
        .current_dir(dir)
        .env("HUBFORGE_PLAIN", "1")
        .env_remove("HUBFORGE_NOW")
        .output()
        .expect("run hubforge")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copy a directory tree (without warehouse files and exports).
pub fn copy_tree(from: &Path, to: &Path) {
    copy_filtered(from, to, |name| {
        !name.contains("warehouse.duckdb") && !name.starts_with("exports")
    });
}

/// Copy a directory tree, keeping the paths (relative to `from`) `keep` accepts.
pub fn copy_filtered(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(from).expect("prefix");
        let name = rel.to_string_lossy();
        if !keep(&name) {
            continue;
        }
        let target = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A temporary copy of the example project.
pub fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&repo().join("example_project"), dir.path());
    dir
}

/// A copy of the example project that has been built once with the real binary.
/// The first caller builds; every caller gets its own copy (warehouse included).
pub fn built_example() -> tempfile::TempDir {
    static BUILT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let template = BUILT.get_or_init(|| {
        let dir = example_copy();
        let out = hubforge(dir.path(), &["build"]);
        assert!(
            out.status.success(),
            "building the example failed:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        dir
    });
    let dir = tempfile::tempdir().expect("tempdir");
    // The warehouse with its write-ahead log, if any: together they are the database.
    copy_filtered(template.path(), dir.path(), |_| true);
    dir
}

/// Replace `from` by `to` in a project file (the text must be there).
pub fn edit(dir: &Path, rel: &str, from: &str, to: &str) {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(from), "{rel} does not contain {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
}

/// `plan --format json` of a project, parsed.
pub fn plan_json(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "--format", "json"];
    args.extend_from_slice(extra);
    let out = hubforge(dir, &args);
    assert!(
        out.status.success(),
        "plan failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("plan json")
}

/// Model names of a plan's `models` (or another list), sorted.
pub fn names(plan: &serde_json::Value, list: &str) -> Vec<String> {
    let mut v: Vec<String> = plan[list]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_string())
        .collect();
    v.sort();
    v
}

/// The plan entry of one model.
pub fn entry<'a>(plan: &'a serde_json::Value, list: &str, name: &str) -> &'a serde_json::Value {
    plan[list]
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}: {plan}"))
}

/// Rows of a query against a project's warehouse, every value as text.
pub fn query(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .expect("config");
    let conn = duckdb::Connection::open_with_flags(dir.join("warehouse.duckdb"), config)
        .expect("open warehouse");
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = stmt.query([]).expect("query");
    let mut out = Vec::new();
    while let Some(row) = rows.next().expect("row") {
        let n = row.as_ref().column_count();
        out.push(
            (0..n)
                .map(
                    |i| match row.get::<_, duckdb::types::Value>(i).expect("value") {
                        duckdb::types::Value::Null => "NULL".to_string(),
                        duckdb::types::Value::Text(s) => s,
                        v => format!("{v:?}"),
                    },
                )
                .collect(),
        );
    }
    out
}

/// One value of a query.
pub fn scalar(dir: &Path, sql: &str) -> String {
    query(dir, sql)
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .expect("a value")
}

/// `build --format json` of a project, parsed; the build must succeed.
pub fn build_json(dir: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["build", "--format", "json"];
    args.extend_from_slice(extra);
    let out = hubforge(dir, &args);
    assert!(
        out.status.success(),
        "build failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_str(&stdout(&out)).expect("build json")
}

/// A table's rows in a stable order, as one text per row (for byte-for-byte comparisons).
pub fn table_rows(dir: &Path, table: &str, filter: &str) -> Vec<String> {
    query(
        dir,
        &format!("SELECT CAST(t AS VARCHAR) AS r FROM {table} t WHERE {filter} ORDER BY r"),
    )
    .into_iter()
    .map(|r| r.join("|"))
    .collect()
}

/// The backfill of the pricing fix: the three months the bug touched, the
/// corrected model and everything below it (the README's story).
pub const QUARTER_BACKFILL: [&str; 8] = [
    "build",
    "--backfill",
    "--start",
    "2025-10-01",
    "--end",
    "2026-01-01",
    "--select",
    "int_order_lines_priced+",
];

/// The example's pricing bug fixed: discounts were subtracted twice, so the
/// line amount of `int_order_lines_priced` changes (the README's story).
pub fn fix_pricing(dir: &Path) {
    edit(
        dir,
        "models/intermediate/int_order_lines_priced.sql",
        "CAST(l.quantity * p.unit_price - l.discount_amount AS DECIMAL(18,2)) AS line_net_amount",
        "CAST(l.quantity * p.unit_price - l.discount_amount * 0.5 AS DECIMAL(18,2)) AS line_net_amount",
    );
}

/// A change of one column's expression in a mid-DAG model of the example:
/// `int_order_revenue.vat_amount` is rounded.
pub fn change_vat_amount(dir: &Path) {
    edit(
        dir,
        "models/intermediate/int_order_revenue.sql",
        "ELSE {{ with_vat(\"order_net_amount\", var(\"vat_rate\")) }} - order_net_amount END AS vat_amount",
        "ELSE round({{ with_vat(\"order_net_amount\", var(\"vat_rate\")) }} - order_net_amount, 2) END AS vat_amount",
    );
}

/// Remove the rows of `days` from a source file; returns its former text.
pub fn drop_days(dir: &Path, rel: &str, days: &[&str]) -> String {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).expect("read");
    let kept: String = text
        .lines()
        .filter(|l| !days.iter().any(|d| l.contains(d)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(kept.len() < text.len(), "{rel} has rows on {days:?}");
    std::fs::write(&path, kept).expect("write");
    text
}

/// Start hubforge with `HUBFORGE_PAUSE_AT=point` and wait until it is paused
/// there: the paused process, for the test to act on and kill (`Ok(None)`
/// when it ended without reaching the point; its stderr when it failed).
pub fn paused_at(dir: &Path, point: &str, args: &[&str]) -> Result<Option<Child>, String> {
    paused_at_with(dir, point, args, &[])
}

/// [`paused_at`] with more environment variables.
pub fn paused_at_with(
    dir: &Path,
    point: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Option<Child>, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args(args)
        .current_dir(dir)
        .env("HUBFORGE_PLAIN", "1")
        .env("HUBFORGE_PAUSE_AT", point)
        .envs(env.iter().copied())
        .env_remove("HUBFORGE_NOW")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hubforge");
    let stderr = child.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap_or_default();
        if line.starts_with("hubforge: paused at") {
            return Ok(Some(child));
        }
        seen.push(line);
    }
    if child.wait().expect("wait").success() {
        Ok(None)
    } else {
        Err(seen.join("\n"))
    }
}

/// Start `hubforge args` in `dir` with `HUBFORGE_PAUSE_AT=point`, wait until it
/// pauses there and SIGKILL it: Ok(true). Ok(false) when it finished without
/// reaching the point; Err with what it printed when it failed.
pub fn kill_at_pause(dir: &Path, point: &str, args: &[&str]) -> Result<bool, String> {
    Ok(match paused_at(dir, point, args)? {
        Some(mut child) => {
            child.kill().expect("SIGKILL");
            child.wait().expect("wait");
            true
        }
        None => false,
    })
}

/// [`kill_at_pause`], which must reach the point.
pub fn kill_at(dir: &Path, point: &str, args: &[&str]) {
    let reached = kill_at_pause(dir, point, args);
    assert!(
        reached == Ok(true),
        "the build never reached {point}: {reached:?}"
    );
}

/// Every row of every published view of `main` and of hubforge's state, as text.
/// The run log is left out: it records failed and interrupted runs too.
pub fn snapshot(dir: &Path) -> Vec<String> {
    let tables = query(
        dir,
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_schema = 'main' OR (table_schema = '_hubforge' AND table_type = 'BASE TABLE' AND table_name <> 'runs') ORDER BY 1, 2",
    );
    let mut out = Vec::new();
    for t in tables {
        let name = format!("{}.{}", t[0], t[1]);
        out.push(format!("== {name}"));
        out.extend(table_rows(dir, &name, "true"));
    }
    out
}

/// Run git in `dir` with a fixed identity and dates, whatever the machine's
/// configuration; its output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new project of `files` (path under the project, text).
/// A source of two events, a monthly model summing them, a view `overall`
/// summing the model and a view `raw_total` summing the source: how views
/// follow the types under them. `warehouse` is the `[warehouse]` table's body.
pub fn view_types_project(warehouse: &str) -> tempfile::TempDir {
    project_of(&[
        (
            "data/events.csv",
            "event_time,value\n2025-01-03 10:00:00,4\n2025-02-05 11:00:00,7\n",
        ),
        (
            "hubforge.toml",
            &format!(
                "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-03-01\"\n\n\
                 [warehouse]\n{warehouse}\n\n\
                 [sources.events]\npath = \"data/events.csv\"\ntime_column = \"event_time\"\n"
            ),
        ),
        (
            "models/monthly.sql",
            "/* @hubforge\nkind = \"incremental\"\ntime_column = \"month\"\nunit = \"month\"\n*/\n\
             SELECT CAST(date_trunc('month', event_time) AS DATE) AS month, sum(value) AS total\n\
             FROM events WHERE event_time >= {{ start }} AND event_time < {{ end }} GROUP BY 1\n",
        ),
        (
            "models/overall.sql",
            "/* @hubforge\nkind = \"view\"\n*/\nSELECT sum(total) AS total FROM monthly\n",
        ),
        (
            "models/raw_total.sql",
            "/* @hubforge\nkind = \"view\"\n*/\nSELECT sum(value) AS total FROM events\n",
        ),
    ])
}

pub fn project_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a file in a directory")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}
