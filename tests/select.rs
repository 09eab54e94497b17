//! Selector semantics on a small graph:
//!
//! raw_orders -> stg_orders -> revenue -> revenue_view
//!                         \-> customer_orders
//! customers (seed) -> stg_customers -/

mod common;

use std::collections::BTreeSet;

use hubforge::select::select;
use hubforge::workspace::Workspace;

fn names(ws: &Workspace, sel: &[&str], exclude: &[&str]) -> Vec<String> {
    let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
    let exclude: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
    let set = select(&ws.dag, &ws.project, &sel, &exclude).expect("valid selector");
    let mut out: Vec<String> = set
        .into_iter()
        .map(|i| ws.dag.nodes[i].name.to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn selector_semantics() {
    let ws = Workspace::load(&common::fixture("selectors"), &[]).expect("fixture loads");
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        (&["revenue"], &[], &["revenue"]),
        (&["REVENUE"], &[], &["revenue"]),
        (&["+revenue"], &[], &["raw_orders", "revenue", "stg_orders"]),
        (&["1+revenue"], &[], &["revenue", "stg_orders"]),
        (
            &["stg_orders+"],
            &[],
            &["customer_orders", "revenue", "revenue_view", "stg_orders"],
        ),
        (
            &["stg_orders+1"],
            &[],
            &["customer_orders", "revenue", "stg_orders"],
        ),
        (
            &["@stg_customers"],
            &[],
            &[
                "customer_orders",
                "customers",
                "raw_orders",
                "stg_customers",
                "stg_orders",
            ],
        ),
        (&["tag:staging"], &[], &["stg_customers", "stg_orders"]),
        (&["tag:finance"], &[], &["revenue", "revenue_view"]),
        (
            &["path:models/marts"],
            &[],
            &["customer_orders", "revenue", "revenue_view"],
        ),
        (&["kind:view"], &[], &["revenue_view"]),
        (&["kind:incremental"], &[], &["revenue", "stg_orders"]),
        (&["kind:seed"], &[], &["customers"]),
        (&["product:true"], &[], &["revenue"]),
        (&["product:finance"], &[], &["revenue"]),
        (&["stg_*"], &[], &["stg_customers", "stg_orders"]),
        // Space (or several arguments) = union; comma = intersection.
        (
            &["revenue customer_orders"],
            &[],
            &["customer_orders", "revenue"],
        ),
        (
            &["revenue", "customer_orders"],
            &[],
            &["customer_orders", "revenue"],
        ),
        (&["tag:finance,kind:incremental"], &[], &["revenue"]),
        (
            &["stg_orders+,path:models/marts"],
            &[],
            &["customer_orders", "revenue", "revenue_view"],
        ),
        (
            &["+tag:finance"],
            &[],
            &["raw_orders", "revenue", "revenue_view", "stg_orders"],
        ),
        (
            &["stg_orders+"],
            &["revenue+"],
            &["customer_orders", "stg_orders"],
        ),
        (
            &[],
            &["path:models/marts"],
            &["customers", "raw_orders", "stg_customers", "stg_orders"],
        ),
    ];
    for (sel, exclude, expected) in cases {
        assert_eq!(
            names(&ws, sel, exclude),
            *expected,
            "select {sel:?} exclude {exclude:?}"
        );
    }
}

#[test]
fn unknown_names_and_methods_are_errors_with_suggestions() {
    let ws = Workspace::load(&common::fixture("selectors"), &[]).expect("fixture loads");
    let err = select(&ws.dag, &ws.project, &["revenu+".to_string()], &[]).unwrap_err();
    assert!(
        err.message.contains("did you mean `revenue`?"),
        "{}",
        err.message
    );
    let err = select(&ws.dag, &ws.project, &["tags:x".to_string()], &[]).unwrap_err();
    assert!(
        err.message.contains("unknown method `tags:`"),
        "{}",
        err.message
    );
    let empty: BTreeSet<usize> =
        select(&ws.dag, &ws.project, &["tag:nothing".to_string()], &[]).unwrap();
    assert!(empty.is_empty());
}
