//! Sources users can trust: declared schemas, bad rows named or quarantined,
//! and every source problem reported at the source's entry in hubforge.toml.
//! Each case edits a copy of `fixtures/sources/base` and runs the real binary.

mod common;

use std::path::Path;

use common::{copy_tree, edit, fixture, hubforge, query, stderr, stdout};

/// A fresh copy of the base fixture.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_tree(&fixture("sources/base"), dir.path());
    dir
}

/// Run `args`, expect exit `code`, return stderr.
fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = hubforge(dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

fn succeeds(dir: &Path, args: &[&str]) -> String {
    let out = hubforge(dir, args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    format!("{}{}", stdout(&out), stderr(&out))
}

const ORDERS: &str = "data/orders/2025-02.csv";

#[test]
fn missing_file() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "data/orders/*.csv",
        "data/orders/2025-03.csv",
    );
    let err = fails(dir.path(), &["build"], 2);
    assert!(!err.contains("LINE 1"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn empty_glob() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "data/orders/*.csv",
        "data/order/*.csv",
    );
    // Planning reads sources too, and says the same.
    let plan = fails(dir.path(), &["plan"], 2);
    let err = fails(dir.path(), &["build"], 2);
    assert_eq!(plan, err);
    insta::assert_snapshot!(err);
}

#[test]
fn bad_date_row_fails_naming_file_line_column_and_value() {
    let dir = project();
    edit(dir.path(), ORDERS, "6,2025-02-11", "6,2025-02-30");
    let err = fails(dir.path(), &["build"], 1);
    assert!(err.contains("data/orders/2025-02.csv:3"), "{err}");
    assert!(
        err.contains("order_date") && err.contains("2025-02-30"),
        "{err}"
    );
    insta::assert_snapshot!(err);
    // Nothing was built.
    assert!(
        !dir.path().join("warehouse.duckdb").exists()
            || query(
                dir.path(),
                "SELECT CAST(count(*) AS VARCHAR) FROM information_schema.tables WHERE table_name = 'daily_revenue'"
            ) == [["0"]]
    );
}

#[test]
fn quarantined_rows_are_kept_aside_and_the_build_equals_a_clean_one() {
    let dir = project();
    edit(dir.path(), ORDERS, "6,2025-02-11", "6,2025-02-30");
    edit(
        dir.path(),
        "hubforge.toml",
        "time_column",
        "on_bad_rows = \"quarantine\"\ntime_column",
    );
    let out = succeeds(dir.path(), &["build"]);
    assert!(
        out.contains("Kept 1 bad row of source raw_orders out of the build; see _hubforge_rejects.raw_orders."),
        "{out}"
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT file, CAST(line AS VARCHAR), \"column\", error FROM _hubforge_rejects.raw_orders"
        ),
        [[
            "data/orders/2025-02.csv",
            "3",
            "order_date",
            "Error when converting column \"order_date\". Could not convert string \"2025-02-30\" to 'DATE'"
        ]]
    );

    let clean = project();
    edit(clean.path(), ORDERS, "6,2025-02-11,3.10\n", "");
    succeeds(clean.path(), &["build"]);
    let rows = "SELECT CAST(t AS VARCHAR) FROM daily_revenue t ORDER BY order_date";
    assert_eq!(query(dir.path(), rows), query(clean.path(), rows));

    // The count stays in the summary while the files are unchanged.
    let json = common::build_json(dir.path(), &[]);
    assert_eq!(json["rejected_rows"]["raw_orders"], 1);
}

#[test]
fn extra_column_is_a_warning() {
    let dir = project();
    let text = std::fs::read_to_string(dir.path().join(ORDERS)).unwrap();
    let widened: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l},channel\n")
            } else {
                format!("{l},web\n")
            }
        })
        .collect();
    std::fs::write(dir.path().join(ORDERS), widened).unwrap();
    let out = hubforge(dir.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let warning = &err[err.find("warning[").expect("a warning")..];
    let help = warning.find("   = help:").expect("a help line");
    let warning = &warning[..help + warning[help..].find('\n').expect("line end") + 1];
    insta::assert_snapshot!(warning);
}

#[test]
fn missing_column() {
    let dir = project();
    let text = std::fs::read_to_string(dir.path().join(ORDERS)).unwrap();
    let narrowed: String = text
        .lines()
        .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
        .collect();
    std::fs::write(dir.path().join(ORDERS), narrowed).unwrap();
    insta::assert_snapshot!(fails(dir.path(), &["build"], 1));
}

#[test]
fn renamed_column() {
    let dir = project();
    edit(
        dir.path(),
        ORDERS,
        "id,order_date,amount",
        "id,order_date,amount_eur",
    );
    insta::assert_snapshot!(fails(dir.path(), &["build"], 1));
}

#[test]
fn bad_declaration() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "amount = \"DECIMAL(18,2)\" }",
        "amount = \"DECIMAL(18,2)\", note = \"STRNG\" }\ndelimeter = \";\"",
    );
    insta::assert_snapshot!(fails(dir.path(), &["check"], 2));
}

#[test]
fn unknown_column_type() {
    let dir = project();
    edit(dir.path(), "hubforge.toml", "\"BIGINT\"", "\"BIGINTEGER\"");
    insta::assert_snapshot!(fails(dir.path(), &["check"], 2));
}

#[test]
fn csv_options_on_a_parquet_source() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "time_column",
        "format = \"parquet\"\ndelimiter = \";\"\ntime_column",
    );
    insta::assert_snapshot!(fails(dir.path(), &["check"], 2));
}

#[test]
fn csv_dialect_is_read_as_declared() {
    let dir = project();
    for f in ["data/orders/2025-01.csv", ORDERS] {
        let path = dir.path().join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        let european: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    return format!("{}\n", l.replace(',', ";"));
                }
                let mut cells: Vec<String> = l.split(',').map(str::to_string).collect();
                let d = &cells[1];
                cells[1] = format!("{}/{}/{}", &d[8..10], &d[5..7], &d[..4]);
                format!("{}\n", cells.join(";"))
            })
            .collect();
        std::fs::write(&path, european).unwrap();
    }
    edit(
        dir.path(),
        "hubforge.toml",
        "time_column",
        "delimiter = \";\"\ndateformat = \"%d/%m/%Y\"\nnull = [\"\", \"NA\"]\ntime_column",
    );
    succeeds(dir.path(), &["build"]);
    assert_eq!(
        query(
            dir.path(),
            "SELECT CAST(count(*) AS VARCHAR), CAST(sum(orders) AS VARCHAR), CAST(sum(revenue) AS VARCHAR) FROM daily_revenue"
        ),
        [["6", "8", "164.75"]]
    );
}

#[test]
fn missing_table_source() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "path        = \"data/orders/*.csv\"",
        "table       = \"legacy.orders\"",
    );
    edit(
        dir.path(),
        "hubforge.toml",
        "columns     = { id = \"BIGINT\", order_date = \"DATE\", amount = \"DECIMAL(18,2)\" }\n",
        "",
    );
    insta::assert_snapshot!(fails(dir.path(), &["build"], 2));
}

/// The base fixture without declared columns, built once.
fn built_undeclared() -> tempfile::TempDir {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "columns     = { id = \"BIGINT\", order_date = \"DATE\", amount = \"DECIMAL(18,2)\" }\n",
        "",
    );
    for f in ["data/orders/2025-01.csv", ORDERS] {
        let path = dir.path().join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        let widened: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("{l},channel\n")
                } else {
                    format!("{l},web\n")
                }
            })
            .collect();
        std::fs::write(&path, widened).unwrap();
    }
    succeeds(dir.path(), &["build"]);
    dir
}

#[test]
fn undeclared_source_lost_column_fails_until_accepted() {
    let dir = built_undeclared();
    let path = dir.path().join(ORDERS);
    let text = std::fs::read_to_string(&path).unwrap();
    let narrowed: String = text
        .lines()
        .map(|l| format!("{}\n", l.rsplit_once(',').unwrap().0))
        .collect();
    std::fs::write(&path, narrowed).unwrap();
    let err = fails(dir.path(), &["build"], 1);
    // Planning says the same, and nothing was published.
    assert_eq!(fails(dir.path(), &["plan"], 1), err);
    insta::assert_snapshot!(err);
    succeeds(dir.path(), &["build", "--accept-schema", "raw_orders"]);
    // Accepted: the file is built as it is, and a later file is compared on its own.
    succeeds(dir.path(), &["build"]);
    succeeds(dir.path(), &["plan"]);
    edit(dir.path(), "data/orders/2025-01.csv", ",web\n", ",shop\n");
    succeeds(dir.path(), &["build"]);
}

#[test]
fn undeclared_source_new_column_is_a_warning() {
    let dir = built_undeclared();
    edit(
        dir.path(),
        ORDERS,
        "amount,channel",
        "amount,channel,coupon",
    );
    let path = dir.path().join(ORDERS);
    let text = std::fs::read_to_string(&path).unwrap();
    let widened: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{l},\n")
            }
        })
        .collect();
    std::fs::write(&path, widened).unwrap();
    let out = hubforge(dir.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let warning = &err[err.find("warning[").expect("a warning")..];
    let help = warning.find("   = help:").expect("a help line");
    let warning = &warning[..help + warning[help..].find('\n').expect("line end") + 1];
    insta::assert_snapshot!(warning);
}

/// Write `sql`'s rows to a Parquet file with the real DuckDB.
fn write_parquet(path: &Path, sql: &str) {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    conn.execute_batch(&format!(
        "COPY ({sql}) TO '{}' (FORMAT parquet)",
        path.display()
    ))
    .expect("write parquet");
}

#[test]
fn parquet_source_without_a_declared_column() {
    let dir = project();
    let data = dir.path().join("data/orders");
    std::fs::remove_file(data.join("2025-01.csv")).unwrap();
    std::fs::remove_file(data.join(ORDERS.rsplit('/').next().unwrap())).unwrap();
    write_parquet(
        &data.join("2025-01.parquet"),
        "SELECT 1 AS id, DATE '2025-01-03' AS order_date, 10.5 AS amount",
    );
    write_parquet(
        &data.join("2025-02.parquet"),
        "SELECT 2 AS id, DATE '2025-02-03' AS order_date, 7.0 AS total",
    );
    edit(dir.path(), "hubforge.toml", "*.csv", "*.parquet");
    insta::assert_snapshot!(fails(dir.path(), &["build"], 1));
    write_parquet(
        &data.join("2025-02.parquet"),
        "SELECT 2 AS id, DATE '2025-02-03' AS order_date, 7.0 AS amount",
    );
    succeeds(dir.path(), &["build"]);
    assert_eq!(
        query(
            dir.path(),
            "SELECT CAST(sum(revenue) AS VARCHAR), typeof(sum(revenue)) FROM daily_revenue"
        ),
        [["17.50", "DECIMAL(38,2)"]]
    );
}

#[test]
fn table_source_drift_against_the_last_build() {
    let dir = project();
    edit(
        dir.path(),
        "hubforge.toml",
        "path        = \"data/orders/*.csv\"",
        "table       = \"legacy.orders\"",
    );
    edit(
        dir.path(),
        "hubforge.toml",
        "columns     = { id = \"BIGINT\", order_date = \"DATE\", amount = \"DECIMAL(18,2)\" }\n",
        "",
    );
    {
        let conn = duckdb::Connection::open(dir.path().join("warehouse.duckdb")).expect("open");
        conn.execute_batch(
            "CREATE SCHEMA legacy; CREATE TABLE legacy.orders AS \
             SELECT 1 AS id, DATE '2025-01-03' AS order_date, 10.5 AS amount",
        )
        .expect("create");
    }
    succeeds(dir.path(), &["build"]);
    {
        let conn = duckdb::Connection::open(dir.path().join("warehouse.duckdb")).expect("open");
        conn.execute_batch("ALTER TABLE legacy.orders RENAME amount TO total")
            .expect("rename");
    }
    insta::assert_snapshot!(fails(dir.path(), &["build"], 1));
}

#[test]
fn quarantined_rows_flag_the_intervals_they_belong_to() {
    let dir = project();
    edit(dir.path(), ORDERS, "6,2025-02-11,3.10", "6,2025-02-11,3.1O");
    edit(dir.path(), ORDERS, "8,2025-02-27", "8,2025-02-31");
    edit(
        dir.path(),
        "hubforge.toml",
        "time_column",
        "on_bad_rows = \"quarantine\"\ntime_column",
    );
    let out = succeeds(dir.path(), &["build"]);
    assert!(
        out.contains(
            "Kept 2 bad rows of source raw_orders out of the build; see _hubforge_rejects.raw_orders.\n  \
             incomplete: 2025-02-11..2025-02-12\n  \
             1 of them without a readable time: any interval may be incomplete\n"
        ),
        "{out}"
    );
    let json = common::build_json(dir.path(), &[]);
    assert_eq!(
        json["rejected_intervals"]["raw_orders"],
        serde_json::json!({ "intervals": ["2025-02-11..2025-02-12"], "rows_without_time": 1 })
    );
}

/// Rewrite every line of `file` after the header with `f`.
fn rewrite_rows(dir: &Path, file: &str, f: impl Fn(&str) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let out: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("{l}\n")
            } else {
                format!("{}\n", f(l))
            }
        })
        .collect();
    std::fs::write(&path, out).unwrap();
}

#[test]
fn undeclared_source_type_change_fails_naming_the_file_and_column() {
    let dir = built_undeclared();
    // Whole amounts are read as integers in that file alone; together with
    // the other file they are still decimals: nothing built changes.
    rewrite_rows(dir.path(), ORDERS, |l| {
        let (head, _) = l.split_once(",web").unwrap();
        let (rest, amount) = head.rsplit_once(',').unwrap();
        format!("{rest},{},web", amount.split('.').next().unwrap())
    });
    succeeds(dir.path(), &["build"]);
    // Amounts written with their currency: the column is text now.
    rewrite_rows(dir.path(), ORDERS, |l| {
        let (head, _) = l.split_once(",web").unwrap();
        format!("{head} EUR,web")
    });
    let err = fails(dir.path(), &["build"], 1);
    assert_eq!(fails(dir.path(), &["plan"], 1), err);
    insta::assert_snapshot!(err);
}

#[test]
fn accepted_schema_drift_is_recorded_as_a_decision() {
    let dir = built_undeclared();
    rewrite_rows(dir.path(), ORDERS, |l| {
        l.rsplit_once(',').unwrap().0.to_string()
    });
    edit(dir.path(), ORDERS, "amount,channel", "amount");
    fails(dir.path(), &["build"], 1);
    succeeds(dir.path(), &["build", "--accept-schema", "raw_orders"]);
    assert_eq!(
        query(
            dir.path(),
            "SELECT model, action, fingerprint, note FROM _hubforge.decisions"
        ),
        [[
            "raw_orders",
            "accept_schema",
            "id BIGINT, order_date DATE, amount DOUBLE, channel VARCHAR",
            "source `raw_orders`: file data/orders/2025-02.csv has no column `channel` (read at the last build)"
        ]]
    );
}

#[test]
fn unreadable_file() {
    let dir = project();
    edit(dir.path(), "hubforge.toml", "*.csv", "*.parquet");
    std::fs::write(
        dir.path().join("data/orders/2025-01.parquet"),
        "id,order_date,amount\n1,2025-01-03,10.50\n",
    )
    .unwrap();
    let err = fails(dir.path(), &["build"], 1);
    assert!(!err.contains("LINE 1"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn json_source_with_a_declared_schema() {
    let dir = project();
    let data = dir.path().join("data/orders");
    for f in ["2025-01.csv", "2025-02.csv"] {
        std::fs::remove_file(data.join(f)).unwrap();
    }
    std::fs::write(
        data.join("2025-01.json"),
        "{\"id\": 1, \"order_date\": \"2025-01-03\", \"amount\": \"10.50\"}\n\
         {\"id\": 2, \"order_date\": \"2025-01-03\", \"amount\": 4.25}\n",
    )
    .unwrap();
    edit(dir.path(), "hubforge.toml", "*.csv", "*.json");
    succeeds(dir.path(), &["build"]);
    assert_eq!(
        query(
            dir.path(),
            "SELECT CAST(revenue AS VARCHAR), typeof(revenue) FROM daily_revenue"
        ),
        [["14.75", "DECIMAL(38,2)"]]
    );
    // A file without a declared column is drift, named like any other.
    std::fs::write(
        data.join("2025-02.json"),
        "{\"id\": 3, \"order_date\": \"2025-02-03\", \"total\": 7}\n",
    )
    .unwrap();
    let err = fails(dir.path(), &["build"], 1);
    assert!(err.contains("error[HF063]"), "{err}");
    insta::assert_snapshot!(err);
}
