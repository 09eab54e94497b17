//! `hubforge impact`: a git repository built in a temp dir (base commit, then an
//! edit in the working tree), the real binary, snapshots of the Markdown and
//! JSON reports for each kind of change a pull request makes.

mod common;

use std::path::{Path, PathBuf};

use common::{hubforge, stderr, stdout};

const CONFIG: &str = r#"[project]
name  = "shop"
start = "2024-01-01"
end   = "2024-01-06"

[warehouse]
path = "warehouse.duckdb"

[sources.raw_orders]
path        = "data/orders.csv"
time_column = "ordered_at"

[vars]
vat_rate = 0.2

[[destinations]]
name     = "finance"
products = ["revenue_daily"]

[[destinations]]
name     = "tax"
products = ["vat_daily"]
paused   = true

[[destinations]]
name     = "crm"
products = ["customer_orders"]
"#;

const ORDERS: &str = "order_id,customer_id,ordered_at,amount_cents,status
1,c1,2024-01-01 09:00:00,1200,paid
2,c2,2024-01-01 10:00:00,15000,paid
3,c1,2024-01-02 11:00:00,800,cancelled
4,c3,2024-01-03 12:00:00,2500,paid
5,c2,2024-01-04 13:00:00,990,paid
6,c3,2024-01-05 14:00:00,30000,paid
";

const MACROS: &str = "{% macro cents_to_units(col) %}({{ col }} / 100.0){% endmacro %}\n";

const STG_ORDERS: &str = r#"/* @hubforge
kind        = "incremental"
time_column = "ordered_at"
unit        = "day"
*/
SELECT order_id, customer_id, ordered_at, {{ cents_to_units("amount_cents") }} AS amount, status
FROM raw_orders
WHERE ordered_at >= {{ start }} AND ordered_at < {{ end }}
"#;

const ORDER_REVENUE: &str = r#"/* @hubforge
kind        = "incremental"
time_column = "order_date"
unit        = "day"
*/
SELECT CAST(ordered_at AS DATE) AS order_date, customer_id, amount AS revenue,
       amount * {{ var("vat_rate") }} AS vat
FROM stg_orders
WHERE ordered_at >= {{ start }} AND ordered_at < {{ end }}
"#;

const REVENUE_DAILY: &str = r#"/* @hubforge
kind        = "incremental"
time_column = "order_date"
unit        = "day"
product     = true
description = "Revenue per day"
*/
SELECT order_date, sum(revenue) AS revenue
FROM order_revenue
WHERE order_date >= {{ start }} AND order_date < {{ end }}
GROUP BY order_date
"#;

const VAT_DAILY: &str = r#"/* @hubforge
kind    = "table"
product = true
*/
SELECT order_date, sum(vat) AS vat FROM order_revenue GROUP BY order_date
"#;

const CUSTOMER_ORDERS: &str = r#"/* @hubforge
kind    = "table"
product = true
*/
SELECT customer_id, count(*) AS orders FROM stg_orders GROUP BY customer_id
"#;

const BIG_ORDERS: &str = r#"/* @hubforge
kind = "view"
*/
SELECT order_id, amount FROM stg_orders WHERE amount > {{ cents_to_units("10000") }}
"#;

const REGIONS: &str = "customer_id,region\nc1,north\nc2,south\nc3,north\n";

const CUSTOMER_REGIONS: &str = "SELECT customer_id, upper(region) AS region FROM regions\n";

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn edit(dir: &Path, rel: &str, from: &str, to: &str) {
    let path = dir.join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{rel} has no `{from}`");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// The shop project committed as the base of a git repository.
fn repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "hubforge.toml", CONFIG);
    write(d, ".gitignore", "warehouse.duckdb*\ntarget/\n");
    write(d, "data/orders.csv", ORDERS);
    write(d, "macros/money.sql", MACROS);
    write(d, "models/staging/stg_orders.sql", STG_ORDERS);
    write(d, "models/intermediate/order_revenue.sql", ORDER_REVENUE);
    write(d, "models/marts/revenue_daily.sql", REVENUE_DAILY);
    write(d, "models/marts/vat_daily.sql", VAT_DAILY);
    write(d, "models/marts/customer_orders.sql", CUSTOMER_ORDERS);
    write(d, "models/marts/big_orders.sql", BIG_ORDERS);
    write(d, "seeds/regions.csv", REGIONS);
    write(d, "models/marts/customer_regions.sql", CUSTOMER_REGIONS);
    common::git(d, &["init", "-q", "-b", "main"]);
    common::git(d, &["add", "-A"]);
    common::git(d, &["commit", "-q", "-m", "base"]);
    let sha = common::git(d, &["rev-parse", "HEAD"]);
    (dir, sha)
}

/// Markdown and JSON reports against the base, with the commit id filtered out.
fn reports(dir: &Path, sha: &str) -> (String, serde_json::Value) {
    let md = hubforge(dir, &["impact", "--base", sha]);
    assert!(md.status.success(), "{}", stderr(&md));
    let json = hubforge(dir, &["impact", "--base", sha, "--format", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let text = stdout(&md)
        .replace(sha, "[commit]")
        .replace(&sha[..12], "[commit]");
    let mut value: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    value["base"]["commit"] = serde_json::json!("[commit]");
    value["base"]["ref"] = serde_json::json!("[commit]");
    (text.replace(sha, "[commit]"), value)
}

fn names(report: &serde_json::Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

fn check(name: &str, dir: &Path, sha: &str) -> serde_json::Value {
    let (md, json) = reports(dir, sha);
    insta::assert_snapshot!(format!("{name}_markdown"), md);
    insta::assert_snapshot!(
        format!("{name}_json"),
        serde_json::to_string_pretty(&json).unwrap()
    );
    json
}

#[test]
fn reformat_is_an_empty_report() {
    let (dir, sha) = repo();
    edit(
        dir.path(),
        "models/marts/revenue_daily.sql",
        "SELECT order_date, sum(revenue) AS revenue",
        "-- formatted\nselect   order_date,\n       sum(revenue)   as revenue",
    );
    let json = check("reformat", dir.path(), &sha);
    assert!(names(&json, "changed").is_empty());
    assert!(names(&json, "affected").is_empty());
    assert_eq!(json["summary"]["intervals"], 0);
    assert_eq!(json["files"][0]["status"], "modified");
}

#[test]
fn non_breaking_column_addition() {
    let (dir, sha) = repo();
    edit(
        dir.path(),
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount AS revenue, status,",
    );
    let json = check("non_breaking", dir.path(), &sha);
    assert_eq!(names(&json, "changed"), ["order_revenue"]);
    assert_eq!(json["changed"][0]["change"], "non_breaking");
    assert!(names(&json, "affected").is_empty());
    assert_eq!(names(&json, "not_affected"), ["revenue_daily", "vat_daily"]);
}

#[test]
fn breaking_column_change_reaches_some_products_and_not_others() {
    let (dir, sha) = repo();
    edit(
        dir.path(),
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount - 1 AS revenue,",
    );
    let json = check("breaking_column", dir.path(), &sha);
    assert_eq!(json["changed"][0]["change"], "breaking");
    assert_eq!(
        json["changed"][0]["columns"],
        serde_json::json!(["revenue"])
    );
    assert_eq!(names(&json, "affected"), ["revenue_daily"]);
    assert_eq!(names(&json, "not_affected"), ["vat_daily"]);
    assert_eq!(names(&json, "products"), ["revenue_daily"]);
    assert_eq!(
        json["summary"]["destinations"],
        serde_json::json!(["finance"])
    );
    assert_eq!(json["summary"]["breaking"], true);
    let fail = hubforge(
        dir.path(),
        &["impact", "--base", &sha, "--fail-on", "breaking"],
    );
    assert_eq!(fail.status.code(), Some(1), "{}", stderr(&fail));
    assert!(stderr(&fail).contains("order_revenue"), "{}", stderr(&fail));
}

#[test]
fn where_change_affects_every_reader() {
    let (dir, sha) = repo();
    edit(
        dir.path(),
        "models/staging/stg_orders.sql",
        "WHERE ordered_at",
        "WHERE status <> 'cancelled' AND ordered_at",
    );
    let json = check("where_change", dir.path(), &sha);
    assert_eq!(names(&json, "changed"), ["stg_orders"]);
    assert!(
        json["changed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("WHERE")
    );
    assert_eq!(
        names(&json, "affected"),
        [
            "big_orders",
            "customer_orders",
            "order_revenue",
            "revenue_daily",
            "vat_daily"
        ]
    );
    assert!(names(&json, "not_affected").is_empty());
}

#[test]
fn new_model() {
    let (dir, sha) = repo();
    write(
        dir.path(),
        "models/marts/orders_by_status.sql",
        "SELECT status, count(*) AS orders FROM stg_orders GROUP BY status\n",
    );
    let json = check("new_model", dir.path(), &sha);
    assert_eq!(names(&json, "changed"), ["orders_by_status"]);
    assert_eq!(json["changed"][0]["change"], "new");
    assert_eq!(json["files"][0]["status"], "added");
}

#[test]
fn removed_model() {
    let (dir, sha) = repo();
    std::fs::remove_file(dir.path().join("models/marts/big_orders.sql")).unwrap();
    let json = check("removed_model", dir.path(), &sha);
    assert_eq!(names(&json, "removed"), ["big_orders"]);
    assert!(names(&json, "changed").is_empty());
    let fail = hubforge(
        dir.path(),
        &["impact", "--base", &sha, "--fail-on", "breaking"],
    );
    assert_eq!(fail.status.code(), Some(1));
}

#[test]
fn renamed_files() {
    let (dir, sha) = repo();
    let d = dir.path();
    // The same model moved to another folder, and a model renamed.
    std::fs::create_dir_all(d.join("models/crm")).unwrap();
    common::git(
        d,
        &[
            "mv",
            "models/marts/customer_orders.sql",
            "models/crm/customer_orders.sql",
        ],
    );
    common::git(
        d,
        &[
            "mv",
            "models/marts/big_orders.sql",
            "models/marts/large_orders.sql",
        ],
    );
    let json = check("renamed", d, &sha);
    assert!(names(&json, "removed").is_empty());
    assert_eq!(names(&json, "changed"), ["large_orders"]);
    assert_eq!(json["changed"][0]["renamed_from"], "big_orders");
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f["status"] == "renamed"));
}

#[test]
fn changed_macro_reaches_every_model_using_it() {
    let (dir, sha) = repo();
    edit(
        dir.path(),
        "macros/money.sql",
        "({{ col }} / 100.0)",
        "round({{ col }} / 100.0, 2)",
    );
    let json = check("macro", dir.path(), &sha);
    assert_eq!(names(&json, "changed"), ["stg_orders", "big_orders"]);
    assert_eq!(json["macros"][0]["name"], "cents_to_units");
    assert_eq!(
        json["macros"][0]["models"],
        serde_json::json!(["big_orders", "stg_orders"])
    );
}

#[test]
fn changed_var() {
    let (dir, sha) = repo();
    edit(
        dir.path(),
        "hubforge.toml",
        "vat_rate = 0.2",
        "vat_rate = 0.21",
    );
    let json = check("var", dir.path(), &sha);
    assert_eq!(names(&json, "changed"), ["order_revenue"]);
    assert_eq!(json["changed"][0]["columns"], serde_json::json!(["vat"]));
    assert_eq!(names(&json, "affected"), ["vat_daily"]);
    assert_eq!(names(&json, "not_affected"), ["revenue_daily"]);
    assert_eq!(json["vars"][0]["name"], "vat_rate");
    // The tax destination is paused: the report says its deliveries are held.
    assert_eq!(json["destinations"][0]["name"], "tax");
    assert_eq!(json["destinations"][0]["paused"], true);
}

#[test]
fn changed_seed_rebuilds_its_readers() {
    let (dir, sha) = repo();
    edit(dir.path(), "seeds/regions.csv", "c2,south", "c2,west");
    let json = check("seed", dir.path(), &sha);
    assert!(names(&json, "changed").is_empty());
    assert_eq!(names(&json, "affected"), ["customer_regions"]);
    assert_eq!(json["affected"][0]["change"], "source_changed");
    assert_eq!(json["affected"][0]["full"], true);
}

/// Every file under `dir` with its contents, except git's own.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn impact_leaves_no_warehouse_and_no_file_behind() {
    let (dir, sha) = repo();
    let d = dir.path();
    edit(
        d,
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount - 1 AS revenue,",
    );
    let before = tree(d);
    let status_before = common::git(d, &["status", "--porcelain", "--untracked-files=all"]);
    for format in ["markdown", "json"] {
        let out = hubforge(d, &["impact", "--base", &sha, "--format", format]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(!d.join("warehouse.duckdb").exists());
    assert_eq!(tree(d), before);
    assert_eq!(
        common::git(d, &["status", "--porcelain", "--untracked-files=all"]),
        status_before
    );
    // No backfill range is guessed from a warehouse that is not there: each
    // model's whole history, and no row estimate.
    let json: serde_json::Value = serde_json::from_str(&stdout(&hubforge(
        d,
        &["impact", "--base", &sha, "--format", "json"],
    )))
    .unwrap();
    assert_eq!(json["warehouse"], false);
    assert_eq!(
        json["changed"][0]["estimated_rows"],
        serde_json::Value::Null
    );
    assert_eq!(
        json["changed"][0]["intervals"],
        serde_json::json!([["2024-01-01", "2024-01-06"]])
    );
}

#[test]
fn a_built_warehouse_gives_rows_and_is_left_as_it_was() {
    let (dir, sha) = repo();
    let d = dir.path();
    let built = hubforge(d, &["build"]);
    assert!(built.status.success(), "{}", stderr(&built));
    edit(
        d,
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount - 1 AS revenue,",
    );
    let before = tree(d);
    let json = check("with_warehouse", d, &sha);
    assert_eq!(json["warehouse"], true);
    // order_revenue holds one row per order: 6 rows over its 5 days.
    assert_eq!(json["changed"][0]["estimated_rows"], 6);
    assert_eq!(tree(d), before);
}

#[test]
fn a_bad_base_ref_is_a_clear_error() {
    let (dir, _) = repo();
    let out = hubforge(dir.path(), &["impact", "--base", "no-such-branch"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(stderr(&out).replace(&*dir.path().to_string_lossy(), "[dir]"));
}

#[test]
fn a_custom_template_overrides_the_markdown() {
    let (dir, sha) = repo();
    let d = dir.path();
    edit(
        d,
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount - 1 AS revenue,",
    );
    let template = d.join("mine.j2");
    std::fs::write(
        &template,
        "{% for m in changed %}{{ m.name }}: {{ m.change }} ({{ m.columns | join(',') }})\n{% endfor %}",
    )
    .unwrap();
    let out = hubforge(
        d,
        &[
            "impact",
            "--base",
            &sha,
            "--template",
            template.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "order_revenue: breaking (revenue)\n");
}

#[test]
fn fail_on_any_fails_only_when_a_model_changes() {
    let (dir, sha) = repo();
    let d = dir.path();
    let clean = hubforge(d, &["impact", "--base", &sha, "--fail-on", "any"]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    assert!(stdout(&clean).contains("No model changes"));
    // A non-breaking change passes --fail-on breaking and fails --fail-on any.
    edit(
        d,
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount AS revenue, status,",
    );
    let breaking = hubforge(d, &["impact", "--base", &sha, "--fail-on", "breaking"]);
    assert!(breaking.status.success(), "{}", stderr(&breaking));
    let any = hubforge(
        d,
        &[
            "impact",
            "--base",
            &sha,
            "--fail-on",
            "any",
            "--format",
            "json",
        ],
    );
    assert_eq!(any.status.code(), Some(1));
    // The report is still printed in full before the exit code says no.
    let json: serde_json::Value = serde_json::from_str(&stdout(&any)).unwrap();
    assert_eq!(json["changed"][0]["name"], "order_revenue");
}

#[test]
fn a_base_version_that_does_not_load_says_so() {
    let (dir, sha) = repo();
    let d = dir.path();
    // The base commit breaks a model; the working tree repairs it.
    edit(
        d,
        "models/marts/vat_daily.sql",
        "FROM order_revenue",
        "FROM order_revenu",
    );
    common::git(d, &["commit", "-qam", "broken"]);
    let broken = common::git(d, &["rev-parse", "HEAD"]);
    edit(
        d,
        "models/marts/vat_daily.sql",
        "FROM order_revenu",
        "FROM order_revenue",
    );
    let out = hubforge(d, &["impact", "--base", &broken]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown reference `order_revenu`"), "{err}");
    assert!(
        err.contains(&format!("in the project at {broken}")),
        "{err}"
    );
    // Against the sound base commit, the repair is no change at all.
    let ok = hubforge(d, &["impact", "--base", &sha]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// The reports of a change made to the shop project, with `extra` models
/// committed in the base alongside it, or without them.
fn reports_with_and_without(
    extra: &[(&str, &str)],
    change: impl Fn(&Path),
) -> ((String, serde_json::Value), (String, serde_json::Value)) {
    let (plain, plain_sha) = repo();
    change(plain.path());
    let (with, _) = repo();
    let d = with.path();
    for (rel, text) in extra {
        write(d, rel, text);
    }
    common::git(d, &["add", "-A"]);
    common::git(d, &["commit", "-q", "-m", "extra models"]);
    let sha = common::git(d, &["rev-parse", "HEAD"]);
    change(d);
    (reports(plain.path(), &plain_sha), reports(d, &sha))
}

fn breaking_revenue(d: &Path) {
    edit(
        d,
        "models/intermediate/order_revenue.sql",
        "amount AS revenue,",
        "amount - 1 AS revenue,",
    );
}

/// impact parses only the models a change can reach, found over every name
/// each model's SQL mentions: a model that only has a CTE and a column named
/// like the changed model is outside the reach, and the report is the one of
/// a project without it.
#[test]
fn a_cte_or_column_named_like_a_changed_model_is_not_a_reader() {
    let extra = [(
        "models/marts/order_stats.sql",
        "WITH order_revenue AS (SELECT customer_id, orders AS order_revenue FROM customer_orders)\n\
         SELECT customer_id, order_revenue FROM order_revenue\n",
    )];
    let (plain, with) = reports_with_and_without(&extra, breaking_revenue);
    assert_eq!(names(&with.1, "changed"), ["order_revenue"]);
    assert_eq!(names(&with.1, "affected"), ["revenue_daily"]);
    assert_eq!(plain, with);
}

/// Names that are not references (aliases, qualified and quoted columns, a
/// table alias) put models in the first, lexical bound of the reach, and
/// their readers after them; once parsed they leave it, and the report is
/// exact.
#[test]
fn models_the_lexical_scan_over_reaches_leave_the_report() {
    let extra = [
        (
            "models/marts/decoy.sql",
            "SELECT c.customer_id, c.orders AS \"ORDER_REVENUE\", 'order_revenue' AS label,\n\
             -- order_revenue, in a comment\n\
             order_revenue.orders AS vat_daily\n\
             FROM customer_orders AS order_revenue JOIN customer_orders AS c USING (customer_id)\n",
        ),
        (
            "models/marts/decoy_reader.sql",
            "SELECT customer_id, vat_daily FROM decoy\n",
        ),
    ];
    let (plain, with) = reports_with_and_without(&extra, breaking_revenue);
    assert_eq!(names(&with.1, "affected"), ["revenue_daily"]);
    assert_eq!(names(&with.1, "not_affected"), ["vat_daily"]);
    assert_eq!(plain, with);
    // A change the decoys do read reaches them, parsed.
    let (_, with) = reports_with_and_without(&extra, |d| {
        edit(
            d,
            "models/marts/customer_orders.sql",
            "count(*) AS orders",
            "count(*) + 1 AS orders",
        )
    });
    assert_eq!(names(&with.1, "changed"), ["customer_orders"]);
    assert_eq!(names(&with.1, "affected"), ["decoy", "decoy_reader"]);
}
