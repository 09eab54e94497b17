//! Kill the real binary (SIGKILL) in the middle of a backfill — while staging,
//! before publishing, and inside the publish transaction — and check that the
//! published tables and state are exactly as before, that a rerun finishes
//! (reusing finished batches), and that the result equals a clean full build
//! with no duplicate rows.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{build_json, built_example, example_copy, kill_at, query, snapshot, table_rows};

fn fix_pricing(dir: &Path) {
    common::fix_pricing(dir);
}

#[test]
fn killing_a_backfill_anywhere_changes_nothing_and_a_rerun_completes() {
    let dir = built_example();
    let p = dir.path();
    fix_pricing(p);
    let args = ["build", "--backfill", "--select", "int_order_lines_priced+"];
    let before = snapshot(p);
    for point in [
        "stage:3",
        "stage:20",
        "validate:0",
        "publish:1",
        "publish:12",
        "publish:60",
    ] {
        kill_at(p, point, &args);
        assert!(
            snapshot(p) == before,
            "killed at {point}: published tables or state changed"
        );
    }
    let run = build_json(p, &["--backfill", "--select", "int_order_lines_priced+"]);
    assert!(
        run["reused_batches"].as_u64().unwrap() >= 20,
        "finished batches are reused: {run}"
    );
    assert!(snapshot(p) != before);

    // The same as building the corrected project from scratch.
    let clean = example_copy();
    fix_pricing(clean.path());
    build_json(clean.path(), &[]);
    for table in [
        "int_order_lines_priced",
        "int_order_revenue",
        "revenue_daily",
        "revenue_monthly",
        "category_revenue_monthly",
        "fct_orders",
        "customer_activity_7d",
        "dim_customers",
    ] {
        assert_eq!(
            table_rows(p, table, "true"),
            table_rows(clean.path(), table, "true"),
            "{table}"
        );
    }
    // No duplicate rows at the grain.
    for (table, grain) in [
        ("int_order_lines_priced", "order_id, line_no"),
        ("revenue_daily", "order_date, country_code"),
        ("revenue_monthly", "order_month, country_code"),
    ] {
        let dupes = query(
            p,
            &format!(
                "SELECT CAST(count(*) AS VARCHAR) FROM (SELECT {grain} FROM {table} GROUP BY ALL HAVING count(*) > 1)"
            ),
        );
        assert_eq!(dupes[0][0], "0", "{table}");
    }
    // Nothing is left of the dead runs: no registered batches, and every data
    // table is one a published model reads.
    assert_eq!(
        query(
            p,
            "SELECT CAST(count(*) AS VARCHAR) FROM _hubforge_stage.staged_batches"
        ),
        [["0"]]
    );
    let stray = query(
        p,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '_hubforge_data' \
         AND table_name NOT IN (SELECT data_table FROM _hubforge.models)",
    );
    assert!(stray.is_empty(), "leftover tables: {stray:?}");
    // And nothing is left to do.
    let plan = common::plan_json(p, &[]);
    assert_eq!(plan["models"], serde_json::json!([]), "{plan}");
}

#[test]
fn a_second_build_while_one_runs_gets_a_clear_error() {
    let dir = built_example();
    let p = dir.path();
    fix_pricing(p);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args(["build"])
        .current_dir(p)
        .env("HUBFORGE_PLAIN", "1")
        .env("HUBFORGE_PAUSE_AT", "stage:2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().unwrap();
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().starts_with("hubforge: paused at") {
            break;
        }
    }
    let second = common::hubforge(p, &["build"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = common::stderr(&second);
    assert!(err.contains("is in use by another process"), "{err}");
}

#[test]
fn ctrl_c_stops_cleanly_publishes_nothing_and_a_rerun_reuses_the_finished_batches() {
    let dir = built_example();
    let p = dir.path();
    fix_pricing(p);
    let before = snapshot(p);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args(["build"])
        .current_dir(p)
        .env("HUBFORGE_PLAIN", "1")
        .env("HUBFORGE_PAUSE_AT", "stage:3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("hubforge: paused at") {
            break;
        }
    }
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(130), "{}", rest.join("\n"));
    assert!(
        rest.iter()
            .any(|l| l.contains("the published warehouse is unchanged")),
        "{}",
        rest.join("\n")
    );
    assert!(
        snapshot(p) == before,
        "an interrupted build changed published tables or state"
    );
    let run = build_json(p, &[]);
    assert!(run["reused_batches"].as_u64().unwrap() >= 3, "{run}");
}
