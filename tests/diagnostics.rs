//! One fixture project per class of input error: the real binary's `check`
//! output is snapshotted, and every error exits with code 2.

mod common;

use common::{fixture, hubforge, stderr, stdout};

fn check_error(case: &str) -> String {
    let dir = fixture(&format!("errors/{case}"));
    let out = hubforge(&dir, &["--project", ".", "check"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{case}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "diagnostics go to stderr");
    stderr(&out)
}

macro_rules! error_case {
    ($name:ident) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(check_error(stringify!($name)));
        }
    };
}

error_case!(malformed_header);
error_case!(unknown_header_key);
error_case!(unknown_reference);
error_case!(cycle);
error_case!(duplicate_name);
error_case!(ddl_in_model);
error_case!(two_statements);
error_case!(undefined_template_variable);
error_case!(non_utf8);
error_case!(empty_file);
error_case!(missing_config);

#[test]
fn json_format_carries_the_same_diagnostic() {
    let dir = fixture("errors/unknown_reference");
    let out = hubforge(&dir, &["--project", ".", "check", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json on stdout");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "HF040");
    assert_eq!(d["name"], "unknown-reference");
    assert_eq!(d["file"], "models/revenue.sql");
    assert_eq!(d["line"], 7);
    assert_eq!(d["column"], 6);
    assert_eq!(d["help"], "did you mean `stg_orders`?");
    assert_eq!(d["snippet"], "FROM stg_ordrs");
}

#[test]
fn check_for_spark_names_each_construct_it_cannot_translate() {
    let dir = fixture("errors/untranslatable_for_spark");
    // DuckDB runs the models as they are.
    let out = hubforge(&dir, &["--project", ".", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = hubforge(&dir, &["--project", ".", "check", "--engine", "spark"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    insta::assert_snapshot!(stderr(&out));
}
