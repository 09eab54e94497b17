//! What `plan` finds stale, on copies of the example project built with the real
//! binary: each acceptance example of the planning issue.

mod common;

use common::{
    built_example, change_vat_amount, drop_days, edit, entry, hubforge, names, plan_json, stderr,
    stdout,
};
use serde_json::json;

#[test]
fn a_fresh_build_leaves_nothing_to_do() {
    let dir = built_example();
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(plan["models"], json!([]), "{plan}");
    assert_eq!(plan["out_of_scope"], json!([]));
    let out = hubforge(dir.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Everything is up to date; nothing to do.\n");
}

#[test]
fn reformatting_and_comments_plan_nothing() {
    let dir = built_example();
    let rel = "models/marts/revenue_daily.sql";
    let path = dir.path().join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    // Different whitespace, keyword case and comments; the same query.
    let reformatted = text
        .replace("SELECT\n", "-- reformatted by hand\nselect\n")
        .replace("    count(*)", "        COUNT(*)  /* orders */")
        .replace("GROUP BY r.order_date", "group   by\n   r.order_date");
    assert_ne!(text, reformatted);
    std::fs::write(&path, reformatted).unwrap();
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(plan["models"], json!([]), "{plan}");
}

#[test]
fn changing_one_column_rebuilds_only_the_readers_of_that_column() {
    let dir = built_example();
    change_vat_amount(dir.path());
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(
        names(&plan, "models"),
        ["int_order_revenue", "revenue_daily", "revenue_monthly"],
        "{plan}"
    );
    let m = entry(&plan, "models", "int_order_revenue");
    assert_eq!(m["change"], "breaking");
    assert_eq!(m["columns"], json!(["vat_amount"]));
    assert_eq!(m["reason"], "changes vat_amount");
    assert_eq!(m["intervals"], json!([["2024-01-01", "2026-01-01"]]));
    let d = entry(&plan, "models", "revenue_daily");
    assert_eq!(d["change"], "indirect");
    assert_eq!(d["columns"], json!(["vat_amount"]));
    assert_eq!(d["reason"], "reads int_order_revenue.vat_amount");
    let m = entry(&plan, "models", "revenue_monthly");
    assert_eq!(m["change"], "indirect");
    assert_eq!(m["intervals"], json!([["2024-01-01", "2026-01-01"]]));
}

#[test]
fn adding_a_column_rebuilds_only_that_model() {
    let dir = built_example();
    edit(
        dir.path(),
        "models/marts/revenue_daily.sql",
        "    count(*)                                                  AS orders,",
        "    count(*)                                                  AS orders,\n    count(DISTINCT r.customer_id) AS customers,",
    );
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(names(&plan, "models"), ["revenue_daily"], "{plan}");
    let m = entry(&plan, "models", "revenue_daily");
    assert_eq!(m["change"], "non_breaking");
    assert_eq!(m["reason"], "adds customers");
}

#[test]
fn changing_a_where_clause_rebuilds_all_descendants() {
    let dir = built_example();
    edit(
        dir.path(),
        "models/intermediate/int_customer_activity_daily.sql",
        "WHERE order_date >= {{ start }}",
        "WHERE customer_id IS NOT NULL AND order_date >= {{ start }}",
    );
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(
        names(&plan, "models"),
        [
            "customer_activity_7d",
            "dim_customers",
            "int_customer_activity_daily"
        ],
        "{plan}"
    );
    let m = entry(&plan, "models", "int_customer_activity_daily");
    assert_eq!(m["change"], "breaking");
    assert!(
        m["reason"].as_str().unwrap().starts_with("all columns: "),
        "{m}"
    );
    assert_eq!(
        entry(&plan, "models", "customer_activity_7d")["change"],
        "indirect"
    );
    assert_eq!(entry(&plan, "models", "dim_customers")["full"], true);
}

#[test]
fn metadata_only_changes_build_nothing() {
    let dir = built_example();
    edit(
        dir.path(),
        "models/marts/revenue_daily.sql",
        "description  = \"Daily revenue",
        "description  = \"Revenue per day",
    );
    edit(
        dir.path(),
        "models/marts/dim_customers.sql",
        "destinations = [\"crm\"]",
        "destinations = []",
    );
    edit(
        dir.path(),
        "hubforge.toml",
        "products = [\"dim_customers\", \"customer_activity_7d\"]",
        "products = [\"customer_activity_7d\"]",
    );
    let plan = plan_json(dir.path(), &[]);
    assert_eq!(plan["models"], json!([]), "{plan}");
    assert_eq!(
        names(&plan, "metadata_only"),
        ["dim_customers", "revenue_daily"]
    );
}

#[test]
fn a_range_on_a_breaking_change_plans_inside_and_reports_outside() {
    let dir = built_example();
    change_vat_amount(dir.path());
    let plan = plan_json(
        dir.path(),
        &["--start", "2025-10-01", "--end", "2026-01-01"],
    );
    assert_eq!(
        entry(&plan, "models", "int_order_revenue")["intervals"],
        json!([["2025-10-01", "2026-01-01"]])
    );
    assert_eq!(
        entry(&plan, "models", "revenue_monthly")["intervals"],
        json!([["2025-10-01", "2026-01-01"]])
    );
    let left = entry(&plan, "out_of_scope", "int_order_revenue");
    assert_eq!(left["intervals"], json!([["2024-01-01", "2025-10-01"]]));
    assert_eq!(left["change"], "breaking");
    assert_eq!(
        names(&plan, "out_of_scope"),
        ["int_order_revenue", "revenue_daily", "revenue_monthly"]
    );
}

#[test]
fn late_source_data_is_found_and_propagated_with_windows_and_months() {
    let dir = built_example();
    // The rows of two days are corrected in place (here: they vanish from the export).
    drop_days(
        dir.path(),
        "data/orders/2025-11.csv",
        &["2025-11-10", "2025-11-11"],
    );
    let plan = plan_json(dir.path(), &[]);
    let m = entry(&plan, "models", "int_orders");
    assert_eq!(m["change"], "source_changed");
    assert_eq!(
        m["intervals"],
        json!([["2025-11-10", "2025-11-12"]]),
        "{plan}"
    );
    assert_eq!(
        entry(&plan, "models", "revenue_daily")["intervals"],
        json!([["2025-11-10", "2025-11-12"]])
    );
    // A monthly child rebuilds the whole month.
    assert_eq!(
        entry(&plan, "models", "revenue_monthly")["intervals"],
        json!([["2025-11-01", "2025-12-01"]])
    );
    // A 7-day window reads those days for six more days.
    assert_eq!(
        entry(&plan, "models", "customer_activity_7d")["intervals"],
        json!([["2025-11-10", "2025-11-18"]])
    );
    // Full tables downstream are rebuilt whole.
    assert_eq!(entry(&plan, "models", "fct_orders")["full"], true);
    // Nothing reads orders in payments.
    assert!(!names(&plan, "models").contains(&"payments_daily".to_string()));
}

#[test]
fn a_changed_source_without_time_column_makes_its_readers_stale() {
    let dir = built_example();
    let path = dir.path().join("data/customers.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    // Change one field of the last row.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    lines[n - 1] = lines[n - 1].replacen(',', ",x", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let plan = plan_json(dir.path(), &[]);
    let m = entry(&plan, "models", "stg_customer_versions");
    assert_eq!(m["change"], "source_changed");
    assert_eq!(m["full"], true);
    // An incremental reader of a rebuilt table is rebuilt over its whole history.
    assert_eq!(
        entry(&plan, "models", "int_order_revenue")["intervals"],
        json!([["2024-01-01", "2026-01-01"]])
    );
}

#[test]
fn plan_text_explains_changes_with_a_sql_diff() {
    let dir = built_example();
    change_vat_amount(dir.path());
    let out = hubforge(dir.path(), &["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Directly modified:\n  ~ int_order_revenue  breaking: changes vat_amount"),
        "{text}"
    );
    assert!(text.contains("+++ after"), "{text}");
    assert!(
        text.contains(
            "Indirectly affected:\n  ~ revenue_daily  indirect: reads int_order_revenue.vat_amount"
        ),
        "{text}"
    );
    assert!(text.contains("Summary: 3 models, "), "{text}");
}

#[test]
fn forward_only_models_apply_new_logic_to_new_intervals_only() {
    let dir = built_example();
    let p = dir.path();
    edit(
        p,
        "models/marts/revenue_daily.sql",
        "product      = true",
        "product      = true\nforward_only = true",
    );
    edit(
        p,
        "models/marts/revenue_daily.sql",
        "CAST(sum(r.net_revenue) AS DECIMAL(18,2))                 AS net_revenue",
        "CAST(round(sum(r.net_revenue), 1) AS DECIMAL(18,2))      AS net_revenue",
    );
    // Built intervals keep the logic they were built with; nothing downstream is stale.
    let plan = plan_json(p, &[]);
    assert_eq!(plan["models"], json!([]), "{plan}");
    // A new month of history gets the new logic.
    edit(
        p,
        "hubforge.toml",
        "end   = \"2026-01-01\"",
        "end   = \"2026-02-01\"",
    );
    let plan = plan_json(p, &[]);
    let m = entry(&plan, "models", "revenue_daily");
    assert_eq!(m["intervals"], json!([["2026-01-01", "2026-02-01"]]));
    assert_eq!(m["change"], "missing");
}

#[test]
fn state_written_by_a_newer_hubforge_is_refused() {
    let dir = built_example();
    let p = dir.path();
    {
        let conn = duckdb::Connection::open(p.join("warehouse.duckdb")).unwrap();
        conn.execute_batch("UPDATE _hubforge.meta SET value = '99' WHERE key = 'schema_version'")
            .unwrap();
    }
    for command in ["plan", "build"] {
        let out = hubforge(p, &[command]);
        assert_eq!(out.status.code(), Some(1), "{command}");
        assert!(
            stderr(&out).contains("written by a newer hubforge (state schema version 99"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn staleness_at_a_window_edge_is_per_unit_after_a_backfill_and_mark_current() {
    // The sequence: a pricing fix backfilled for Q4 only, then the
    // engineer vouches for everything before October.
    let dir = built_example();
    common::fix_pricing(dir.path());
    let out = hubforge(dir.path(), &common::QUARTER_BACKFILL);
    assert!(out.status.success(), "{}", stderr(&out));
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
    let plan = plan_json(dir.path(), &[]);
    // Only the 7-day window model, and only the six October days whose window
    // reads September (built before the decision): per unit, not per batch.
    assert_eq!(names(&plan, "models"), ["customer_activity_7d"], "{plan}");
    let e = entry(&plan, "models", "customer_activity_7d");
    assert_eq!(e["intervals"], json!([["2025-10-01", "2025-10-07"]]), "{e}");
    assert_eq!(e["units"], 6);
    assert_eq!(plan["summary"]["intervals"], 6);
    // October 7th onwards reads October only: current.
    let october = plan_json(
        dir.path(),
        &["--start", "2025-10-07", "--end", "2025-11-01"],
    );
    assert_eq!(october["models"], json!([]), "{october}");
}
