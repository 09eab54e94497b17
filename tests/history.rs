//! `intervals` and `runs` after a scripted sequence on the example: a build, a
//! scoped backfill of a pricing fix, a decision that the older months are
//! right, a run killed mid-way and a run that fails. Ids, times and durations
//! are redacted; everything else is as a user sees it.

mod common;

use common::{edit, hubforge, kill_at, stderr, stdout};

const USER: &[&str] = &["--user", "tester"];

fn run(dir: &std::path::Path, args: &[&str]) -> String {
    let mut all = USER.to_vec();
    all.extend_from_slice(args);
    let out = hubforge(dir, &all);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn redacted(f: impl FnOnce()) {
    insta::with_settings!({filters => vec![
        (r"\d{8}T\d{6}-[0-9a-f]{6}", "[run-id]"),
        (r"decision-\d{8}T\d{6}", "[decision]"),
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}", "[time]"),
        (r#""seconds": [0-9.]+"#, r#""seconds": "[seconds]""#),
        (r"\(\d+\.\ds\)", "([seconds])"),
        (r"\b\d+\.\ds\b", "[seconds]"),
        // Which batch fails first depends on the order threads finish in.
        (
            r"batch [0-9-]+\.\.[0-9-]+: \d+ rows lie outside the batch window \(their order_date ranges from [0-9-]+ to [0-9-]+\)",
            "batch [batch]: [n] rows lie outside the batch window ([dates])",
        ),
    ]}, {
        f()
    });
}

/// One space for each run of spaces: column widths follow the redacted values.
fn squeeze(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn intervals_and_runs_after_backfill_decision_kill_and_failure() {
    let dir = common::example_copy();
    let p = dir.path();
    run(p, &["build"]);
    common::fix_pricing(p);
    run(p, &common::QUARTER_BACKFILL);
    run(
        p,
        &[
            "mark-current",
            "--select",
            "int_order_lines_priced+",
            "--end",
            "2025-10-01",
            "--note",
            "the bug only touched Q4",
        ],
    );
    // A run killed while staging: it published nothing, and the log says so.
    kill_at(p, "stage:1", &["--user", "tester", "build"]);
    // A run that fails: rows outside the batch window.
    let widened = "WHERE r.order_date >= {{ start }} - INTERVAL 1 DAY AND r.order_date < {{ end }}";
    edit(
        p,
        "models/marts/revenue_daily.sql",
        "WHERE r.order_date >= {{ start }} AND r.order_date < {{ end }}",
        widened,
    );
    let out = hubforge(p, &["--user", "tester", "build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    edit(
        p,
        "models/marts/revenue_daily.sql",
        widened,
        "WHERE r.order_date >= {{ start }} AND r.order_date < {{ end }}",
    );

    let runs_json: serde_json::Value =
        serde_json::from_str(&run(p, &["runs", "--format", "json"])).expect("json");
    let outcomes: Vec<&str> = runs_json["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(
        outcomes,
        ["failed", "interrupted", "published", "published"]
    );

    redacted(|| {
        insta::assert_snapshot!(
            "intervals_window_model",
            run(p, &["intervals", "customer_activity_7d"])
        );
        insta::assert_snapshot!(
            "intervals_marked_model",
            run(p, &["intervals", "int_order_lines_priced"])
        );
        insta::assert_snapshot!("intervals_table", run(p, &["intervals", "fct_orders"]));
        insta::assert_snapshot!(
            "intervals_window_model_json",
            run(
                p,
                &["intervals", "customer_activity_7d", "--format", "json"]
            )
        );
        insta::assert_snapshot!("runs", squeeze(&run(p, &["runs"])));
        insta::assert_snapshot!(
            "runs_limit_json",
            run(p, &["runs", "-n", "2", "--format", "json"])
        );
        insta::assert_snapshot!("run_backfill", run(p, &["runs", "2"]));
        insta::assert_snapshot!("run_failed", run(p, &["runs", "4"]));
        insta::assert_snapshot!(
            "run_backfill_json",
            run(p, &["runs", "2", "--format", "json"])
        );
    });

    // A run or model that does not exist is a clear error.
    let out = hubforge(p, &["runs", "99"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no run `99`"), "{}", stderr(&out));
    let out = hubforge(p, &["intervals", "raw_orders"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`raw_orders` is a source"),
        "{}",
        stderr(&out)
    );
    let out = hubforge(p, &["intervals", "revenue_daly"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("did you mean `revenue_daily`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn intervals_of_a_model_never_built_are_missing() {
    let dir = common::example_copy();
    let out = run(
        dir.path(),
        &["intervals", "revenue_monthly", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let ranges = v["ranges"].as_array().expect("ranges");
    assert_eq!(ranges.len(), 1, "{v}");
    assert_eq!(ranges[0]["status"], "missing");
    assert_eq!(ranges[0]["start"], "2024-01-01");
    assert!(ranges[0]["run_id"].is_null());
    let out = run(dir.path(), &["runs"]);
    assert_eq!(out, "No runs yet: `hubforge build` records one per run.\n");
}
