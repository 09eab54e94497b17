//! The real binary on `example_project`: check, dag, ls.

mod common;

use common::{hubforge, repo, stderr, stdout};

fn example() -> std::path::PathBuf {
    repo().join("example_project")
}

#[test]
fn check_passes_on_the_example() {
    let out = hubforge(&example(), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("acme_hub: "), "{text}");
    assert!(text.contains("dependencies: ok"), "{text}");

    let out = hubforge(&example(), &["check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(v["ok"], true);
    assert!(v["models"].as_u64().unwrap() >= 15, "{v}");
    assert!(v["diagnostics"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn check_finds_the_project_from_a_subdirectory() {
    let out = hubforge(&example().join("models/marts"), &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn dag_renders_every_format() {
    let mermaid = stdout(&hubforge(&example(), &["dag"]));
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(mermaid.contains("stg_orders --> "), "{mermaid}");

    let dot = stdout(&hubforge(&example(), &["dag", "--format", "dot"]));
    assert!(dot.starts_with("digraph hubforge {"), "{dot}");

    let out = hubforge(&example(), &["dag", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let nodes = v["nodes"].as_array().unwrap();
    // Topological: every dependency is listed before its dependents.
    let position = |name: &str| nodes.iter().position(|n| n["name"] == name).unwrap();
    for n in nodes {
        for dep in n["depends_on"].as_array().unwrap() {
            assert!(position(dep.as_str().unwrap()) < position(n["name"].as_str().unwrap()));
        }
    }
    // Deterministic output.
    assert_eq!(
        stdout(&hubforge(&example(), &["dag", "--format", "json"])),
        stdout(&out)
    );
}

#[test]
fn ls_lists_a_selection() {
    let out = hubforge(
        &example(),
        &["ls", "--select", "+revenue_daily", "--format", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let mut names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    names.sort();
    // revenue_daily and everything upstream of it: no other mart, no payments.
    assert_eq!(
        names,
        [
            "countries",
            "int_order_lines",
            "int_order_lines_priced",
            "int_order_revenue",
            "int_orders",
            "legacy_orders",
            "product_catalog",
            "product_prices",
            "raw_customers",
            "raw_order_lines",
            "raw_orders",
            "revenue_daily",
            "stg_customer_versions",
            "stg_legacy_order_lines",
            "stg_legacy_orders",
            "stg_order_lines",
            "stg_orders",
            "stg_product_prices",
        ]
    );

    let out = hubforge(&example(), &["ls", "--select", "product:true"]);
    let mut products: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    products.sort();
    assert_eq!(
        products,
        [
            "category_revenue_monthly",
            "customer_activity_7d",
            "dim_customers",
            "payments_daily",
            "revenue_daily",
            "revenue_monthly",
        ]
    );

    let out = hubforge(&example(), &["ls", "--select", "no_such_model"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error[HF050]"), "{}", stderr(&out));
    // DuckDB's lock ends with its process: nothing to break.
    let out = hubforge(&example(), &["build", "--break-lock"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--break-lock is for projects on Spark"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_creates_a_project_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new_hub");
    let out = hubforge(dir.path(), &["init", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = hubforge(&target, &["check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("new_hub: 2 models"),
        "{}",
        stdout(&out)
    );
    // It builds, and its product has the starter data.
    let out = hubforge(&target, &["build"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("Built 2 models and 1 seed"),
        "{}",
        stdout(&out)
    );
    let rows = common::query(
        &target,
        "SELECT CAST(sum(events) AS VARCHAR) FROM daily_events",
    );
    assert_eq!(rows, [["5"]]);
    // A second init refuses to overwrite.
    let out = hubforge(dir.path(), &["init", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_user_recorded_falls_back_to_the_account_name_and_can_be_given() {
    let dir = common::example_copy();
    let account = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    let account = String::from_utf8_lossy(&account.stdout).trim().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args(["build", "-q"])
        .current_dir(dir.path())
        .env("HUBFORGE_PLAIN", "1")
        .env_remove("USER")
        .env_remove("USERNAME")
        .env_remove("HUBFORGE_USER")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Quiet: no progress on stderr, one summary line on stdout.
    assert_eq!(common::stderr(&out), "");
    let text = common::stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("Built 21 models"), "{text}");
    let users = common::query(dir.path(), "SELECT user_name FROM _hubforge.runs");
    assert_eq!(users, [[account.clone()]]);
    assert_ne!(account, "unknown");

    // --user and HUBFORGE_USER win over $USER.
    common::fix_pricing(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubforge"))
        .args([
            "mark-current",
            "--select",
            "int_order_lines_priced",
            "--note",
            "checked by hand",
        ])
        .current_dir(dir.path())
        .env("USER", "someone-else")
        .env("HUBFORGE_USER", "ana")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stdout(&out).contains("by ana"),
        "{}",
        common::stdout(&out)
    );
    let users = common::query(
        dir.path(),
        "SELECT DISTINCT user_name FROM _hubforge.decisions",
    );
    assert_eq!(users, [["ana"]]);
    let out = hubforge(dir.path(), &["--user", "bo", "build"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let users = common::query(
        dir.path(),
        "SELECT user_name FROM _hubforge.runs ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(users, [["bo"]]);
}

#[test]
fn verbose_says_what_it_does_and_how_long_it_took() {
    let dir = common::example_copy();
    let out = hubforge(dir.path(), &["build", "-v"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("reading state and observing sources…"),
        "{err}"
    );
    assert!(err.contains("timing: load project"), "{err}");
    // Per batch timing, e.g. "timing: revenue_daily 2024-01-01..2024-02-01 (…)".
    assert!(err.contains("timing: revenue_daily"), "{err}");
    assert!(!err.contains("0/0"), "{err}");
    let out = hubforge(dir.path(), &["plan", "-q", "-v"]);
    assert!(!out.status.success(), "-q and -v conflict");
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _hubforge"),
        ("zsh", "#compdef hubforge"),
        ("fish", "complete -c hubforge"),
    ] {
        let out = hubforge(&example(), &["completions", shell]);
        assert!(out.status.success(), "{}", common::stderr(&out));
        let script = common::stdout(&out);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("mark-current"), "{shell}");
    }
}

#[test]
fn backfilling_only_views_is_refused_with_what_to_select() {
    for command in ["plan", "build"] {
        let out = hubforge(
            &example(),
            &[command, "--backfill", "--select", "stg_payments"],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("`stg_payments` is a view"), "{err}");
        assert!(err.contains("--select stg_payments+"), "{err}");
    }
    // A view among tables is simply left out: its readers are restated.
    let out = hubforge(
        &example(),
        &[
            "plan",
            "--backfill",
            "--select",
            "stg_payments+",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
