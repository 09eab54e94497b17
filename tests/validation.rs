//! Validation before publish: metrics before/after, thresholds, audits that
//! block the publish, and `hubforge diff`. Each case edits a copy of
//! `fixtures/validation/base` (or the example) and runs the real binary.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{build_json, copy_tree, edit, fixture, hubforge, query, stderr, stdout};

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture("validation/base"), dir.path());
    dir
}

/// Set the audits of the `orders` model.
fn audits(dir: &Path, list: &str) {
    let path = dir.join("models/orders.sql");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("audits").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    std::fs::write(
        &path,
        format!("{}audits      = [{list}]{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = hubforge(dir, args);
    (out.status.code(), stdout(&out), stderr(&out))
}

fn succeeds(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = run(dir, args);
    assert_eq!(code, Some(0), "{out}{err}");
    out
}

fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let (got, out, err) = run(dir, args);
    assert_eq!(got, Some(code), "{out}{err}");
    err
}

/// Rows and content hash of every base table in every schema.
fn checksums(dir: &Path) -> BTreeMap<String, String> {
    let tables = query(
        dir,
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' ORDER BY 1, 2",
    );
    tables
        .into_iter()
        .map(|t| {
            let name = format!("\"{}\".\"{}\"", t[0], t[1]);
            let sum = query(
                dir,
                &format!(
                    "SELECT CAST(count(*) AS VARCHAR) || ':' || CAST(coalesce(sum(hash(t)), 0) AS VARCHAR) FROM {name} t"
                ),
            );
            (name, sum[0][0].clone())
        })
        .collect()
}

#[test]
fn a_blocking_audit_failure_publishes_nothing_and_a_rerun_reuses_the_staged_batches() {
    let dir = project();
    audits(
        dir.path(),
        "\"not_null(id)\", \"accepted_values(status, ['paid', 'refunded'])\"",
    );
    succeeds(dir.path(), &["build"]);
    edit(
        dir.path(),
        "data/orders.csv",
        "5,2025-01-03,paid",
        "5,2025-01-03,lost",
    );
    let before = checksums(dir.path());
    let err = fails(dir.path(), &["build"], 1);
    assert!(
        err.contains(
            "error[HF071]: audit accepted_values(status, ['paid', 'refunded']) of model `orders` failed: 1 row violates it"
        ),
        "{err}"
    );
    assert!(err.contains("intervals: 2025-01-03..2025-01-04"), "{err}");
    assert!(err.contains("5 | 2025-01-03 | lost | 12.00 | 2"), "{err}");
    // Every table that existed is unchanged, apart from the run log (the
    // failed run and its findings) and the staging area kept for the rerun.
    let after = checksums(dir.path());
    for (table, sum) in &before {
        if table.starts_with("\"_hubforge_stage\"")
            || [
                "\"_hubforge\".\"runs\"",
                "\"_hubforge\".\"validations\"",
                "\"_hubforge\".\"validation_findings\"",
            ]
            .contains(&table.as_str())
        {
            continue;
        }
        assert_eq!(after.get(table), Some(sum), "{table} changed");
    }
    assert_eq!(
        query(
            dir.path(),
            "SELECT status FROM _hubforge.runs ORDER BY seq DESC LIMIT 1"
        ),
        [["failed"]]
    );
    assert_eq!(
        query(dir.path(), "SELECT status FROM main.orders WHERE id = 5"),
        [["paid"]]
    );
    // The failed run's findings are kept.
    let shown = succeeds(dir.path(), &["validation"]);
    assert!(shown.contains("✗ audit accepted_values"), "{shown}");

    // An explicit override publishes, reuses what was staged, and is recorded.
    let json = build_json(dir.path(), &["--skip-audits", "accepted_values"]);
    assert!(json["reused_batches"].as_u64().unwrap() >= 1, "{json}");
    assert_eq!(
        query(dir.path(), "SELECT status FROM main.orders WHERE id = 5"),
        [["lost"]]
    );
    let summary = query(
        dir.path(),
        "SELECT summary FROM _hubforge.runs ORDER BY seq DESC LIMIT 1",
    );
    assert!(
        summary[0][0].contains("\"skipped_audits\":[\"accepted_values\"]"),
        "{summary:?}"
    );
}

#[test]
fn a_warn_audit_publishes_and_reports() {
    let dir = project();
    audits(dir.path(), "\"warn: accepted_values(status, 'paid')\"");
    let out = succeeds(dir.path(), &["build"]);
    assert!(
        out.contains("! audit accepted_values(status, 'paid'): 1 row violates it"),
        "{out}"
    );
    assert_eq!(
        query(dir.path(), "SELECT count(*)::VARCHAR FROM main.orders"),
        [["6"]]
    );
}

/// An audit, the failure it reports (`None`: it passes) and an edit of the
/// data (file, from, to) that makes it fail.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    Option<(&'a str, &'a str, &'a str)>,
);

/// Each audit on the base data, passing and failing.
#[test]
fn built_in_and_custom_audits_pass_and_fail() {
    let cases: &[Case] = &[
        ("not_null(id, customer_id)", None, None),
        (
            "not_null(customer_id)",
            Some("1 row violates it"),
            Some(("data/orders.csv", "paid,7.50,3", "paid,7.50,")),
        ),
        ("unique(id)", None, None),
        ("unique(customer_id)", Some("3 rows violate it"), None),
        ("accepted_values(status, 'paid', 'refunded')", None, None),
        (
            "accepted_values(status, 'paid')",
            Some("1 row violates it"),
            None,
        ),
        (
            "relationships(customer_id, customers.customer_id)",
            None,
            None,
        ),
        (
            "relationships(customer_id, customers.customer_id)",
            Some("2 rows violate it"),
            Some(("data/customers.csv", "3,Cy\n", "")),
        ),
        ("row_count(min = 1)", None, None),
        ("row_count(min = 2)", Some("2 rows violate it"), None),
        ("row_count(max = 1)", Some("2 rows violate it"), None),
        ("range(amount, 0, 100)", None, None),
        ("range(amount, 0, 20)", Some("1 row violates it"), None),
        ("range(amount, min = 6)", Some("1 row violates it"), None),
        ("expression('amount > 0')", None, None),
        ("expression('amount > 6')", Some("1 row violates it"), None),
        ("positive(column = amount)", None, None),
        (
            "positive(column = amount)",
            Some("1 row violates it"),
            Some(("data/orders.csv", "paid,30.00", "paid,-30.00")),
        ),
    ];
    for (spec, failure, data_edit) in cases {
        let dir = project();
        audits(dir.path(), &format!("\"{}\"", spec.replace('"', "\\\"")));
        if let Some((file, from, to)) = data_edit {
            edit(dir.path(), file, from, to);
        }
        let (code, out, err) = run(dir.path(), &["build"]);
        match failure {
            None => assert_eq!(code, Some(0), "{spec} should pass:\n{out}{err}"),
            Some(message) => {
                assert_eq!(code, Some(1), "{spec} should fail:\n{out}{err}");
                assert!(err.contains(message), "{spec}: {err}");
                assert!(
                    !dir.path().join("warehouse.duckdb").exists()
                        || query(
                            dir.path(),
                            "SELECT count(*)::VARCHAR FROM information_schema.tables WHERE table_name = 'orders' AND table_schema = 'main'"
                        ) == [["0"]],
                    "{spec}: a model failing an audit was published"
                );
            }
        }
    }
}

#[test]
fn thresholds_warn_or_stop_the_publish() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "[sources.raw_orders]",
        "[validate]\nmax_row_change = \"50%\"\nmax_sum_change = { amount = \"10%\" }\n\n[sources.raw_orders]",
    );
    succeeds(dir.path(), &["build"]);
    // Two more orders on the first day: rows +100 %, amount +50 %.
    edit(
        dir.path(),
        "data/orders.csv",
        "2,2025-01-01,paid,20.00,2\n",
        "2,2025-01-01,paid,20.00,2\n7,2025-01-01,paid,10.00,2\n8,2025-01-01,paid,5.00,3\n",
    );
    let json = build_json(dir.path(), &[]);
    let findings = &json["validation"]["models"][0]["findings"];
    assert_eq!(findings[0]["name"], "max_row_change", "{json}");
    assert_eq!(findings[0]["blocking"], false);
    assert_eq!(findings[0]["intervals"], "2025-01-01..2025-01-02");
    assert_eq!(findings[1]["name"], "max_sum_change.amount");

    // The same breach with severity = "error" in the model header stops the publish.
    edit(
        dir.path(),
        "models/orders.sql",
        "audits      = []",
        "audits      = []\nvalidate    = { severity = \"error\", max_null_increase = \"0%\" }",
    );
    succeeds(dir.path(), &["build"]);
    edit(
        dir.path(),
        "data/orders.csv",
        "7,2025-01-01,paid,10.00,2\n",
        "7,2025-01-01,paid,10.00,2\n9,2025-01-01,,100.00,\n10,2025-01-01,paid,10.00,1\n11,2025-01-01,paid,10.00,1\n12,2025-01-01,paid,10.00,1\n",
    );
    let before = query(dir.path(), "SELECT count(*)::VARCHAR FROM main.orders");
    let err = fails(dir.path(), &["build"], 1);
    assert!(
        err.contains("error[HF072]: threshold max_row_change of model `orders` failed: rows changed by up to +100% (limit 50%) in 1 unit: 2025-01-01..2025-01-02"),
        "{err}"
    );
    assert!(err.contains("threshold max_sum_change.amount"), "{err}");
    assert!(err.contains("threshold max_null_increase"), "{err}");
    assert_eq!(
        query(dir.path(), "SELECT count(*)::VARCHAR FROM main.orders"),
        before
    );
}

#[test]
fn a_pricing_correction_changes_sums_only_in_the_corrected_months() {
    let dir = common::built_example();
    common::fix_pricing(dir.path());
    let out = succeeds(dir.path(), &common::QUARTER_BACKFILL);
    let models = query(
        dir.path(),
        "SELECT model, count(*)::VARCHAR, min(start_ts)::VARCHAR, max(end_ts)::VARCHAR, \
         count(*) FILTER (WHERE json_extract(before, '$.rows') != json_extract(after, '$.rows'))::VARCHAR \
         FROM _hubforge.validations GROUP BY model ORDER BY model",
    );
    let last_run = query(
        dir.path(),
        "SELECT run_id FROM _hubforge.runs ORDER BY seq DESC LIMIT 1",
    );
    let run_models = query(
        dir.path(),
        &format!(
            "SELECT model, min(start_ts)::VARCHAR, max(end_ts)::VARCHAR, \
             (count(*) FILTER (WHERE json_extract(before, '$.rows') != json_extract(after, '$.rows')))::VARCHAR \
             FROM _hubforge.validations WHERE run_id = '{}' GROUP BY model ORDER BY model",
            last_run[0][0]
        ),
    );
    assert!(!models.is_empty());
    for m in &run_models {
        // Only the corrected months (tables are compared whole), and the row
        // counts did not move.
        if m[1] != "NULL" {
            assert!(m[1].as_str() >= "2025-10-01", "{m:?}");
            assert!(m[2].as_str() <= "2026-01-01 00:00:00", "{m:?}");
        }
        assert_eq!(m[3], "0", "row counts changed in {m:?}");
    }
    let section = out
        .split("  revenue_monthly:\n")
        .nth(1)
        .expect("revenue_monthly in the validation summary");
    let section: String = section
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!(section);
    // The run's validation can be shown again later.
    let shown = succeeds(dir.path(), &["validation"]);
    assert!(shown.contains("  revenue_monthly:\n"), "{shown}");
}

#[test]
fn diff_shows_rows_only_on_each_side_changed_values_and_types() {
    let dir = project();
    succeeds(dir.path(), &["build"]);
    // Not built: the published model still has the old rows.
    edit(
        dir.path(),
        "data/orders.csv",
        "2,2025-01-01,paid,20.00,2\n",
        "",
    );
    edit(
        dir.path(),
        "data/orders.csv",
        "1,2025-01-01,paid,10.00",
        "1,2025-01-01,paid,11.50",
    );
    edit(
        dir.path(),
        "data/orders.csv",
        "6,2025-01-04,paid,30.00,3\n",
        "6,2025-01-04,paid,30.00,3\n7,2025-01-04,paid,1.00,1\n",
    );
    let out = succeeds(dir.path(), &["diff", "orders"]);
    insta::assert_snapshot!(out);
    let json: serde_json::Value = serde_json::from_str(&succeeds(
        dir.path(),
        &[
            "diff",
            "orders",
            "--format",
            "json",
            "--start",
            "2025-01-01",
            "--end",
            "2025-01-02",
        ],
    ))
    .unwrap();
    assert_eq!(json["only_published"], 1);
    assert_eq!(json["only_rebuilt"], 0);
    assert_eq!(json["changed"], 1);
    assert_eq!(json["columns"][0]["column"], "day");

    // A changed type is a schema difference; nothing was published by diff.
    edit(
        dir.path(),
        "models/orders.sql",
        "SELECT id, day, status, amount, customer_id",
        "SELECT id, day, status, CAST(amount AS DOUBLE) AS amount, customer_id",
    );
    let json: serde_json::Value = serde_json::from_str(&succeeds(
        dir.path(),
        &["diff", "orders", "--format", "json"],
    ))
    .unwrap();
    assert_eq!(
        json["schema"],
        serde_json::json!([{ "column": "amount", "published": "DECIMAL(18,2)", "rebuilt": "DOUBLE" }])
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT amount::VARCHAR FROM main.orders WHERE id = 1"
        ),
        [["10.00"]]
    );
}

#[test]
fn unknown_audits_and_wrong_arguments_are_check_errors() {
    let dir = project();
    audits(
        dir.path(),
        "\"not_nul(id)\", \"accepted_values(status)\", \"relationships(customer_id, custmers.customer_id)\", \"row_count(mni = 1)\"",
    );
    let err = fails(dir.path(), &["check"], 2);
    insta::assert_snapshot!(err);
}

#[test]
fn skip_validation_publishes_without_metrics() {
    let dir = project();
    audits(dir.path(), "\"accepted_values(status, 'paid')\"");
    let json = build_json(dir.path(), &["--skip-validation"]);
    assert!(json["validation"].is_null(), "{json}");
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*)::VARCHAR FROM _hubforge.validations"
        ),
        [["0"]]
    );
}

/// Delete every stored metric, so that a build reads the rows it replaces.
fn forget_validations(dir: &Path) {
    let conn = duckdb::Connection::open(dir.join("warehouse.duckdb")).expect("open warehouse");
    conn.execute_batch("DELETE FROM _hubforge.validations; CHECKPOINT;")
        .expect("forget validations");
}

/// The "before" metrics of the last run: (model, unit start, metrics).
fn last_before(dir: &Path) -> Vec<(String, String, serde_json::Value)> {
    query(
        dir,
        "SELECT model, coalesce(start_ts::VARCHAR, ''), coalesce(before, 'null') FROM _hubforge.validations \
         WHERE run_id = (SELECT run_id FROM _hubforge.runs ORDER BY seq DESC LIMIT 1) ORDER BY 1, 2",
    )
    .into_iter()
    .map(|r| {
        let metrics = serde_json::from_str(&r[2]).expect("metrics json");
        (r[0].clone(), r[1].clone(), metrics)
    })
    .collect()
}

/// Equal metrics: counts exactly, sums to the rounding of floating-point addition.
fn same_metrics(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    if a.is_null() || b.is_null() {
        return a == b;
    }
    let sums = |m: &serde_json::Value| m["sums"].as_object().cloned().unwrap_or_default();
    let (sa, sb) = (sums(a), sums(b));
    a["rows"] == b["rows"]
        && a["distinct"] == b["distinct"]
        && a["nulls"] == b["nulls"]
        && sa.len() == sb.len()
        && sa.iter().all(|(c, x)| {
            let num =
                |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()?.parse::<f64>().ok());
            match (num(Some(x)), num(sb.get(c))) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                _ => Some(x) == sb.get(c),
            }
        })
}

#[test]
fn the_replaced_rows_measured_from_stored_metrics_equal_a_fresh_scan() {
    let stored = common::built_example();
    let scanned = common::built_example();
    let backfills: [&[&str]; 3] = [
        // A pricing fix over a quarter: incremental models in part, tables whole.
        &common::QUARTER_BACKFILL,
        // One month inside it: its rows were written by the previous run.
        &[
            "build",
            "--backfill",
            "--start",
            "2025-11-01",
            "--end",
            "2025-12-01",
            "--select",
            "int_order_lines_priced+",
        ],
        // Everything, over intervals written by all three runs.
        &["build", "--backfill"],
    ];
    for (i, args) in backfills.iter().enumerate() {
        if i == 0 {
            common::fix_pricing(stored.path());
            common::fix_pricing(scanned.path());
        }
        forget_validations(scanned.path());
        succeeds(scanned.path(), args);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubforge"))
            .args(*args)
            .current_dir(stored.path())
            .env("HUBFORGE_PLAIN", "1")
            .env("HUBFORGE_TIMINGS", "1")
            .output()
            .expect("run hubforge");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("before side from stored metrics"),
            "{args:?} read every replaced row again:\n{}",
            stderr(&out)
        );
        let (a, b) = (last_before(stored.path()), last_before(scanned.path()));
        assert_eq!(
            a.iter().map(|r| (&r.0, &r.1)).collect::<Vec<_>>(),
            b.iter().map(|r| (&r.0, &r.1)).collect::<Vec<_>>(),
            "{args:?}: the same units"
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                same_metrics(&x.2, &y.2),
                "{args:?}: {} {}: stored {} against scanned {}",
                x.0,
                x.1,
                x.2,
                y.2
            );
        }
    }
}
