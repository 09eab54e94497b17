//! SQL that DuckDB accepts but hubforge's parser does not (DuckDB's PIVOT
//! statement) is never refused: the model loads, builds and plans, with its
//! column lineage unknown and handled conservatively.

mod common;

use common::{
    build_json, built_example, edit, entry, hubforge, names, plan_json, query, stderr, stdout,
};
use serde_json::json;

const PIVOT_MODEL: &str = "/* @hubforge\nkind = \"table\"\n*/\n\
PIVOT int_orders ON source_system USING count(*) GROUP BY order_date\n";

#[test]
fn a_pivot_statement_checks_builds_and_plans() {
    let dir = built_example();
    let p = dir.path();
    std::fs::write(p.join("models/marts/orders_by_system.sql"), PIVOT_MODEL).unwrap();

    let out = hubforge(p, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("parsed by DuckDB only (column lineage unknown): orders_by_system"),
        "{}",
        stdout(&out)
    );
    let out = hubforge(
        p,
        &["ls", "--select", "+orders_by_system", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let deps = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "orders_by_system")
        .unwrap()["depends_on"]
        .clone();
    assert_eq!(deps, json!(["int_orders"]));

    let run = build_json(p, &[]);
    assert_eq!(names(&run["plan"], "models"), ["orders_by_system"]);
    let rows = query(
        p,
        "SELECT CAST(sum(legacy) + sum(new) AS VARCHAR) FROM orders_by_system",
    );
    assert_eq!(rows[0][0], "11295");

    // Reformatted: the same canonical form, nothing to do.
    std::fs::write(
        p.join("models/marts/orders_by_system.sql"),
        PIVOT_MODEL.replace(
            "PIVOT int_orders ON",
            "-- orders per system\npivot  int_orders\n  on",
        ),
    )
    .unwrap();
    assert_eq!(plan_json(p, &[])["models"], json!([]));

    // Its lineage is unknown: any change of a column it may read rebuilds it.
    edit(
        p,
        "models/intermediate/int_orders.sql",
        "    shipping_fee,\n    'legacy'",
        "    shipping_fee * 1 AS shipping_fee,\n    'legacy'",
    );
    let plan = plan_json(p, &[]);
    let m = entry(&plan, "models", "orders_by_system");
    assert_eq!(m["change"], "indirect");
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .contains("column lineage is unknown"),
        "{m}"
    );
}

#[test]
fn ddl_that_only_duckdb_parses_is_still_refused() {
    let dir = built_example();
    let p = dir.path();
    std::fs::write(
        p.join("models/marts/bad.sql"),
        "CREATE MACRO add_one(x) AS x + 1\n",
    )
    .unwrap();
    let out = hubforge(p, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error[HF031]"), "{}", stderr(&out));
}
