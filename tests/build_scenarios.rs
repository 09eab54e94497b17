//! The backfill stories of the build issue, end to end on copies of the example
//! project with the real binary and the real DuckDB warehouse.

mod common;

use common::{
    build_json, built_example, drop_days, edit, entry, example_copy, hubforge, names, plan_json,
    project_of, query, scalar, stderr, stdout, table_rows,
};
use serde_json::json;

/// The models a build run worked on.
fn built_models(run: &serde_json::Value) -> Vec<String> {
    names(&run["plan"], "models")
}

#[test]
fn a_second_build_does_nothing() {
    let dir = built_example();
    let out = hubforge(dir.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Everything is up to date; nothing to do.\n");
    // Every model is published under its own name in the default schema.
    assert_eq!(
        scalar(
            dir.path(),
            "SELECT CAST(count(DISTINCT order_date) AS VARCHAR) FROM main.revenue_daily"
        ),
        "731"
    );
}

#[test]
fn pricing_correction_of_the_last_three_months() {
    let dir = built_example();
    let before_old = table_rows(
        dir.path(),
        "revenue_daily",
        "order_date < DATE '2025-10-01'",
    );
    let before_new = table_rows(
        dir.path(),
        "revenue_daily",
        "order_date >= DATE '2025-10-01'",
    );
    let monthly_old = table_rows(
        dir.path(),
        "revenue_monthly",
        "order_month < DATE '2025-10-01'",
    );
    // The bug: discounts were subtracted twice in Q4. The fix changes the line amount.
    common::fix_pricing(dir.path());
    let run = build_json(dir.path(), &common::QUARTER_BACKFILL[1..]);
    let models = built_models(&run);
    for m in [
        "int_order_lines_priced",
        "int_order_revenue",
        "revenue_daily",
        "revenue_monthly",
    ] {
        assert!(
            models.contains(&m.to_string()),
            "{m} not rebuilt: {models:?}"
        );
        let e = entry(&run["plan"], "models", m);
        if e["full"] == false {
            assert_eq!(e["intervals"], json!([["2025-10-01", "2026-01-01"]]), "{m}");
        }
    }
    // Models that do not read prices are untouched.
    assert!(!models.contains(&"payments_daily".to_string()));
    assert!(!models.contains(&"int_orders".to_string()));
    // Earlier months are byte-identical; the corrected months changed.
    assert_eq!(
        table_rows(
            dir.path(),
            "revenue_daily",
            "order_date < DATE '2025-10-01'"
        ),
        before_old
    );
    assert_eq!(
        table_rows(
            dir.path(),
            "revenue_monthly",
            "order_month < DATE '2025-10-01'"
        ),
        monthly_old
    );
    assert_ne!(
        table_rows(
            dir.path(),
            "revenue_daily",
            "order_date >= DATE '2025-10-01'"
        ),
        before_new
    );
    // The plan reports the older months as still built with the old logic.
    let plan = plan_json(dir.path(), &[]);
    let left = entry(&plan, "models", "int_order_lines_priced");
    assert_eq!(left["change"], "breaking");
    assert_eq!(left["intervals"], json!([["2024-01-01", "2025-10-01"]]));

    // The bug only touched Q4: the engineer says so, and state records it.
    let out = hubforge(
        dir.path(),
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
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("int_order_lines_priced  breaking  2024-01-01..2025-10-01"),
        "{}",
        stdout(&out)
    );
    let decisions = query(
        dir.path(),
        "SELECT model, CAST(start_ts AS VARCHAR), CAST(end_ts AS VARCHAR), note FROM _hubforge.decisions WHERE model = 'int_order_lines_priced'",
    );
    assert_eq!(
        decisions,
        [[
            "int_order_lines_priced",
            "2024-01-01 00:00:00",
            "2025-10-01 00:00:00",
            "the bug only touched Q4"
        ]]
    );
    // Left stale: the first six October days of the 7-day window, the only
    // ones that read September's data while it was still marked as built with
    // the old logic. Staleness at a window's edge is per unit, not per batch.
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(names(&plan, "models"), ["customer_activity_7d"], "{plan}");
    assert_eq!(
        entry(&plan, "models", "customer_activity_7d")["intervals"],
        json!([["2025-10-01", "2025-10-07"]])
    );
    build_json(dir.path(), &[]);
    assert_eq!(plan_json(dir.path(), &[])["models"], json!([]));
}

#[test]
fn new_active_customer_definition_rebuilds_its_readers_history_only() {
    let dir = built_example();
    let revenue = table_rows(dir.path(), "revenue_daily", "true");
    edit(
        dir.path(),
        "models/intermediate/int_customer_activity_daily.sql",
        "count(*) FILTER (WHERE NOT is_cancelled) > 0 AS is_active",
        "sum(net_revenue) >= 20 AS is_active",
    );
    let run = build_json(dir.path(), &[]);
    assert_eq!(
        built_models(&run),
        [
            "customer_activity_7d",
            "dim_customers",
            "int_customer_activity_daily"
        ],
        "{run}"
    );
    let m = entry(&run["plan"], "models", "int_customer_activity_daily");
    assert_eq!(m["intervals"], json!([["2024-01-01", "2026-01-01"]]));
    assert_eq!(m["columns"], json!(["is_active"]));
    assert_eq!(table_rows(dir.path(), "revenue_daily", "true"), revenue);
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(plan["models"], json!([]));
}

#[test]
fn migration_from_the_legacy_system_has_no_gaps_or_overlaps() {
    let dir = built_example();
    let p = dir.path();
    // Each order exactly once.
    assert_eq!(
        scalar(
            p,
            "SELECT CAST(count(*) - count(DISTINCT order_id) AS VARCHAR) FROM int_orders"
        ),
        "0"
    );
    // Legacy strictly before the cutover, the new system from it.
    assert_eq!(
        query(
            p,
            "SELECT source_system, CAST(min(order_date) AS VARCHAR), CAST(max(order_date) AS VARCHAR) FROM int_orders GROUP BY 1 ORDER BY 1"
        ),
        vec![
            vec![
                "legacy".to_string(),
                "2024-01-01".to_string(),
                "2024-06-30".to_string()
            ],
            vec![
                "new".to_string(),
                "2024-07-01".to_string(),
                "2025-12-31".to_string()
            ],
        ]
    );
    // No day without orders.
    assert_eq!(
        scalar(
            p,
            "SELECT CAST(count(DISTINCT order_date) AS VARCHAR) FROM int_orders"
        ),
        "731"
    );
    // Moving the cutover rebuilds the migration and everything downstream of it.
    let plan = plan_json(p, &["--var", "cutover_date=2024-07-05"]);
    let planned = names(&plan, "models");
    assert!(
        planned.contains(&"int_orders".to_string())
            && planned.contains(&"revenue_daily".to_string()),
        "{planned:?}"
    );
}

#[test]
fn source_outage_days_arriving_later_are_filled_exactly() {
    let dir = example_copy();
    let p = dir.path();
    let days = ["2025-11-10", "2025-11-11"];
    let files = [
        "data/orders/2025-11.csv",
        "data/order_lines/2025-11.csv",
        "data/payments/2025-11.csv",
    ];
    let originals: Vec<String> = files.iter().map(|f| drop_days(p, f, &days)).collect();
    build_json(p, &[]);
    assert_eq!(
        scalar(
            p,
            "SELECT CAST(count(*) AS VARCHAR) FROM int_orders WHERE order_date IN ('2025-11-10', '2025-11-11')"
        ),
        "0"
    );
    // The late files arrive.
    for (f, text) in files.iter().zip(&originals) {
        std::fs::write(p.join(f), text).unwrap();
    }
    let run = build_json(p, &[]);
    let e = entry(&run["plan"], "models", "int_orders");
    assert_eq!(e["change"], "source_changed");
    assert_eq!(e["intervals"], json!([["2025-11-10", "2025-11-12"]]));
    assert_eq!(
        entry(&run["plan"], "models", "revenue_monthly")["intervals"],
        json!([["2025-11-01", "2025-12-01"]])
    );
    assert_eq!(
        entry(&run["plan"], "models", "customer_activity_7d")["intervals"],
        json!([["2025-11-10", "2025-11-18"]])
    );
    assert_eq!(
        entry(&run["plan"], "models", "payments_daily")["intervals"],
        json!([["2025-11-10", "2025-11-12"]])
    );
    // The result equals a clean build from the complete data.
    let clean = built_example();
    for (table, order) in [
        ("revenue_daily", "true"),
        ("revenue_monthly", "true"),
        ("customer_activity_7d", "true"),
        ("fct_orders", "true"),
    ] {
        assert_eq!(
            table_rows(p, table, order),
            table_rows(clean.path(), table, order),
            "{table}"
        );
    }
}

#[test]
fn a_new_product_gets_its_full_history_and_nothing_else_changes() {
    let dir = built_example();
    std::fs::write(
        dir.path().join("models/marts/revenue_by_channel_monthly.sql"),
        "/* @hubforge\nkind = \"incremental\"\ntime_column = \"order_month\"\nunit = \"month\"\nproduct = true\n*/\n\
         SELECT CAST(date_trunc('month', order_date) AS DATE) AS order_month, channel, sum(net_revenue) AS net_revenue\n\
         FROM int_order_revenue\nWHERE order_date >= {{ start }} AND order_date < {{ end }}\nGROUP BY ALL\n",
    )
    .unwrap();
    let run = build_json(dir.path(), &[]);
    assert_eq!(built_models(&run), ["revenue_by_channel_monthly"]);
    let e = entry(&run["plan"], "models", "revenue_by_channel_monthly");
    assert_eq!(e["change"], "new");
    assert_eq!(e["intervals"], json!([["2024-01-01", "2026-01-01"]]));
    assert_eq!(
        scalar(
            dir.path(),
            "SELECT CAST(count(DISTINCT order_month) AS VARCHAR) FROM revenue_by_channel_monthly"
        ),
        "24"
    );
}

#[test]
fn rows_outside_the_batch_window_fail_the_build_and_publish_nothing() {
    let dir = built_example();
    let before = table_rows(dir.path(), "revenue_daily", "true");
    edit(
        dir.path(),
        "models/marts/revenue_daily.sql",
        "WHERE r.order_date >= {{ start }} AND r.order_date < {{ end }}",
        "WHERE r.order_date >= {{ start }} - INTERVAL 1 DAY AND r.order_date < {{ end }}",
    );
    let out = hubforge(dir.path(), &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("rows lie outside the batch window"),
        "{}",
        stderr(&out)
    );
    assert_eq!(table_rows(dir.path(), "revenue_daily", "true"), before);
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let dir = example_copy();
    let out = hubforge(dir.path(), &["build", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Summary: 21 models, "),
        "{}",
        stdout(&out)
    );
    assert!(
        !dir.path().join("warehouse.duckdb").exists(),
        "a dry run created the warehouse"
    );
    let out = hubforge(dir.path(), &["build", "--dry-run", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(plan["schema_version"], 1);
    assert_eq!(plan["models"].as_array().unwrap().len(), 21);
}

#[test]
fn a_source_can_be_an_existing_table_of_the_warehouse() {
    let dir = project_of(&[
        (
            "hubforge.toml",
            "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-01-04\"\n\n\
             [sources.legacy_orders]\ntable = \"legacy.orders\"\ntime_column = \"ordered_at\"\n",
        ),
        (
            "models/daily.sql",
            "/* @hubforge\nkind = \"incremental\"\ntime_column = \"day\"\nunit = \"day\"\n*/\n\
             SELECT CAST(ordered_at AS DATE) AS day, count(*) AS orders FROM legacy.orders\n\
             WHERE ordered_at >= {{ start }} AND ordered_at < {{ end }} GROUP BY 1\n",
        ),
    ]);
    let p = dir.path();
    {
        let conn = duckdb::Connection::open(p.join("warehouse.duckdb")).unwrap();
        conn.execute_batch(
            "CREATE SCHEMA legacy; CREATE TABLE legacy.orders AS \
             SELECT TIMESTAMP '2025-01-01 10:00:00' + INTERVAL (i % 3) DAY AS ordered_at FROM range(30) t(i);",
        )
        .unwrap();
    }
    let run = build_json(p, &[]);
    assert_eq!(names(&run["plan"], "models"), ["daily"]);
    assert_eq!(
        query(p, "SELECT CAST(sum(orders) AS VARCHAR) FROM daily"),
        [["30"]]
    );
    // Rows corrected in the table are found like late rows in a file.
    {
        let conn = duckdb::Connection::open(p.join("warehouse.duckdb")).unwrap();
        conn.execute_batch("DELETE FROM legacy.orders WHERE ordered_at < TIMESTAMP '2025-01-02'")
            .unwrap();
    }
    let plan = plan_json(p, &[]);
    assert_eq!(
        entry(&plan, "models", "daily")["intervals"],
        json!([["2025-01-01", "2025-01-02"]]),
        "{plan}"
    );
}

/// `build` with `HUBFORGE_TIMINGS`, which says whether it loaded the project
/// (the normal path) or answered from the record of the last no-op build.
fn timed_build(dir: &std::path::Path, now: Option<&str>) -> (String, bool) {
    timed(dir, &["build"], now)
}

/// [`timed_build`] with other arguments.
fn timed(dir: &std::path::Path, args: &[&str], now: Option<&str>) -> (String, bool) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hubforge"));
    cmd.args(args)
        .current_dir(dir)
        .env("HUBFORGE_PLAIN", "1")
        .env("HUBFORGE_TIMINGS", "1")
        .env_remove("HUBFORGE_NOW");
    if let Some(now) = now {
        cmd.env("HUBFORGE_NOW", now);
    }
    let out = cmd.output().expect("run hubforge");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let answered = err.contains("timing: answered from the last no-op build");
    assert_ne!(answered, err.contains("timing: load project"), "{err}");
    (stdout(&out), answered)
}

#[test]
fn a_no_op_build_is_answered_at_once_until_anything_it_reads_changes() {
    let dir = built_example();
    let p = dir.path();
    let up_to_date = "Everything is up to date; nothing to do.\n".to_string();
    // The copy is a new place: the first no-op build plans, the next one answers.
    assert_eq!(timed_build(p, None), (up_to_date.clone(), false));
    assert_eq!(timed_build(p, None), (up_to_date.clone(), true));
    assert_eq!(timed_build(p, None), (up_to_date.clone(), true));

    // A model saved with a new comment: planned again (and still nothing to do).
    edit(
        p,
        "models/marts/revenue_daily.sql",
        "SELECT",
        "-- reviewed\nSELECT",
    );
    assert_eq!(timed_build(p, None), (up_to_date.clone(), false));
    assert_eq!(timed_build(p, None), (up_to_date.clone(), true));

    // Another end of history: planned again.
    assert!(!timed_build(p, Some("2026-01-01")).1);

    // The warehouse written by another client: planned again.
    {
        let conn = duckdb::Connection::open(p.join("warehouse.duckdb")).expect("open");
        conn.execute_batch("CREATE TABLE main.analyst_scratch AS SELECT 1 AS x")
            .expect("write");
    }
    assert_eq!(timed_build(p, None), (up_to_date.clone(), false));
    assert_eq!(timed_build(p, None), (up_to_date.clone(), true));

    // Late source rows: found and built, never answered from the record. The
    // build that rebuilt them planned again from the state it wrote, so the
    // next build is answered at once.
    drop_days(p, "data/payments/2025-11.csv", &["2025-11-10"]);
    let (text, answered) = timed_build(p, None);
    assert!(!answered);
    assert!(text.contains("payments_daily"), "{text}");
    assert_eq!(timed_build(p, None), (up_to_date.clone(), true));
    assert_eq!(timed_build(p, None), (up_to_date.clone(), true));

    // A scoped build answers for its own scope only.
    drop_days(p, "data/payments/2025-11.csv", &["2025-11-11"]);
    let scoped = |args: &[&str]| timed(p, args, None);
    let (text, answered) = scoped(&["build", "--select", "payments_daily"]);
    assert!(!answered && text.contains("payments_daily"), "{text}");
    let (text, answered) = scoped(&["build", "--select", "payments_daily"]);
    assert!(
        answered && text.starts_with("Nothing to do in the selected scope"),
        "{text}"
    );
    let (text, answered) = timed_build(p, None);
    assert!(!answered && text.contains("fct_orders"), "{text}");
    // How much a build prints is not part of what it answers.
    assert_eq!(timed(p, &["-q", "build"], None), (up_to_date.clone(), true));
    assert_eq!(timed_build(p, None), (up_to_date, true));
}

/// A model without `batch` is built in as few batches as its sources' rows
/// allow (`[warehouse] batch_rows`), one that sets it in batches of that many
/// units; the rows are the same either way.
#[test]
fn batches_of_the_default_size_are_joined_up_to_the_rows_of_their_sources() {
    // 90 days of 10 events a day: 900 source rows.
    let events: String = std::iter::once("event_time,user_id,amount\n".to_string())
        .chain((0..900).map(|i| {
            let day =
                chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + chrono::Days::new(i / 10);
            format!("{day} {:02}:00:00,{},{}\n", i % 10, i % 7, i % 13)
        }))
        .collect();
    let daily = "SELECT CAST(event_time AS DATE) AS day, user_id, sum(amount) AS amount, \
                 count(*) AS n FROM events WHERE event_time >= {{ start }} AND event_time < {{ end }} \
                 GROUP BY 1, 2\n";
    let built = |warehouse: &str, batch: &str| {
        let toml = format!(
            "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-04-01\"\n\n\
             [warehouse]\n{warehouse}\n\n\
             [sources.events]\npath = \"data/events.csv\"\ntime_column = \"event_time\"\n"
        );
        let model = format!(
            "/* @hubforge\nkind = \"incremental\"\ntime_column = \"day\"\nunit = \"day\"\n{batch}*/\n{daily}"
        );
        let dir = project_of(&[
            ("data/events.csv", &events),
            ("hubforge.toml", &toml),
            ("models/daily.sql", &model),
        ]);
        let p = dir.path();
        let run = build_json(p, &[]);
        let rows = query(
            p,
            "SELECT CAST(day AS VARCHAR), user_id, amount, n FROM daily ORDER BY 1, 2",
        );
        (run["batches"].as_u64().unwrap(), rows, dir)
    };
    // The whole history in one batch: 900 rows are far below the default.
    let (one, rows, _d1) = built("", "");
    assert_eq!(one, 1);
    // At most 650 source rows: the default batches (31, 31 and 28 days: 310,
    // 310 and 280 rows) become two, the first two joined.
    let (two, rows_joined, _d2) = built("batch_rows = 650", "");
    assert_eq!(two, 2);
    // `batch` set: batches of 31 days whatever the rows.
    let (set, rows_set, _d3) = built("batch_rows = 100000", "batch = 31\n");
    assert_eq!(set, 3);
    let (small, rows_small, _d4) = built("", "batch = 7\n");
    assert_eq!(small, 13);
    assert_eq!(rows.len(), 90 * 7);
    assert_eq!(rows, rows_joined);
    assert_eq!(rows, rows_set);
    assert_eq!(rows, rows_small);
}

/// A view over a model whose column changed type shows the new type in the
/// catalog, as a clean build's does.
#[test]
fn a_view_follows_the_types_of_a_rebuilt_model_under_it() {
    let dir = common::view_types_project("path = \"warehouse.duckdb\"");
    let p = dir.path();
    let type_of = |p: &std::path::Path, view: &str| {
        query(
            p,
            &format!(
                "SELECT data_type FROM duckdb_columns() WHERE schema_name = 'main' \
                 AND table_name = '{view}'"
            ),
        )
    };
    let typed = |p: &std::path::Path| type_of(p, "overall");
    build_json(p, &[]);
    assert_eq!(typed(p), [["HUGEINT"]]);
    edit(
        p,
        "models/monthly.sql",
        "sum(value)",
        "sum(round(value * 1.1, 1))",
    );
    build_json(p, &[]);
    assert_eq!(typed(p), [["DECIMAL(38,1)"]]);
    assert_eq!(
        query(p, "SELECT CAST(total AS VARCHAR) FROM overall"),
        [["12.1"]]
    );

    // A view over a view whose own definition changed (found by the
    // randomized differential test): created again too.
    std::fs::write(
        p.join("models/rounded.sql"),
        "/* @hubforge\nkind = \"view\"\n*/\nSELECT round(total, 2) AS total FROM overall\n",
    )
    .unwrap();
    build_json(p, &[]);
    let rounded = |p: &std::path::Path| type_of(p, "rounded");
    assert_eq!(rounded(p), [["DECIMAL(38,1)"]]);
    edit(
        p,
        "models/overall.sql",
        "sum(total)",
        "CAST(sum(total) AS DOUBLE)",
    );
    build_json(p, &[]);
    assert_eq!(rounded(p), [["DOUBLE"]]);
}
