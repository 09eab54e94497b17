//! The fulfillment manifest and pending deliveries, on copies of the example
//! project with the real binary.

mod common;

use std::path::Path;

use common::{build_json, built_example, edit, hubforge, query, stderr, stdout};

fn manifests(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("target/manifests"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// Every manifest validates against the schema hubforge prints.
fn assert_valid(dir: &Path, manifest: &serde_json::Value) {
    let out = hubforge(dir, &["fulfillment", "--schema"]);
    let schema: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(manifest)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{manifest:#}");
    // And round-trips through the types hubforge writes it with.
    let typed: hubforge::fulfill::Manifest = serde_json::from_value(manifest.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), manifest);
}

/// Run hubforge, which must succeed; its standard output.
fn succeeds(dir: &Path, args: &[&str]) -> String {
    let out = hubforge(dir, args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

fn product<'a>(m: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    m["products"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
}

#[test]
fn a_pricing_correction_manifests_only_the_corrected_months() {
    let dir = built_example();
    let first = manifests(dir.path());
    assert_eq!(first.len(), 1, "the first build changed every product");
    assert_valid(dir.path(), &first[0]);
    common::fix_pricing(dir.path());
    let run = build_json(dir.path(), &common::QUARTER_BACKFILL[1..]);
    let all = manifests(dir.path());
    assert_eq!(all.len(), 2);
    let m = all
        .iter()
        .find(|m| m["run_id"] == run["run_id"])
        .expect("this run's manifest");
    assert_valid(dir.path(), m);
    let daily = product(m, "revenue_daily").expect("revenue_daily changed");
    assert_eq!(
        daily["intervals"],
        serde_json::json!([["2025-10-01", "2026-01-01"]])
    );
    assert_eq!(daily["full"], false);
    assert_eq!(daily["rows_before"], daily["rows_after"]);
    assert_eq!(
        daily["destinations"],
        serde_json::json!([{ "name": "finance", "action": "deliver", "reason": "throttled: 90 intervals per delivery, the rest in later deliveries" }])
    );
    let monthly = product(m, "revenue_monthly").expect("revenue_monthly changed");
    assert_eq!(
        monthly["intervals"],
        serde_json::json!([["2025-10-01", "2026-01-01"]])
    );
    assert_eq!(
        monthly["destinations"],
        serde_json::json!([
            { "name": "finance", "action": "deliver" },
            { "name": "partner_bi", "action": "held", "reason": "paused in hubforge.toml" }
        ])
    );
    // Products that do not read prices are not in it.
    assert!(product(m, "payments_daily").is_none());
    // The manifest is in state, written in the publish transaction.
    assert_eq!(
        query(
            dir.path(),
            &format!(
                "SELECT count(*)::VARCHAR FROM _hubforge.manifests WHERE run_id = '{}'",
                run["run_id"].as_str().unwrap()
            )
        ),
        [["1"]]
    );

    // Pending deliveries merge over runs: revenue_daily was delivered in full
    // by no one yet, so the first build's full rebuild supersedes the months.
    let out = hubforge(dir.path(), &["fulfillment", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pending: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let daily = pending["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["destination"] == "finance" && p["product"] == "revenue_daily")
        .expect("pending for finance");
    assert_eq!(daily["full"], true);
    assert_eq!(daily["runs"].as_array().unwrap().len(), 2);

    // Pausing from the command line holds a destination, recorded with why.
    let out = hubforge(
        dir.path(),
        &["fulfillment", "--pause", "crm", "--note", "CRM migration"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&hubforge(dir.path(), &["fulfillment"]));
    assert!(text.contains("crm (held: paused by "), "{text}");
    assert!(text.contains(": CRM migration)"), "{text}");
    let out = hubforge(dir.path(), &["fulfillment", "--resume", "crm"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&hubforge(dir.path(), &["fulfillment"]));
    assert!(text.contains("crm\n"), "{text}");
}

#[test]
fn a_failed_audit_writes_no_manifest_and_no_pending_delivery() {
    let dir = built_example();
    let before = manifests(dir.path()).len();
    let pending = query(
        dir.path(),
        "SELECT count(*)::VARCHAR FROM _hubforge.fulfillment",
    );
    edit(
        dir.path(),
        "models/marts/revenue_daily.sql",
        "\"range(net_revenue, 0, 1000000)\"",
        "\"range(net_revenue, 0, 10)\"",
    );
    let out = hubforge(
        dir.path(),
        &[
            "build",
            "--backfill",
            "--start",
            "2025-12-01",
            "--end",
            "2026-01-01",
            "--select",
            "revenue_daily",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(manifests(dir.path()).len(), before);
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*)::VARCHAR FROM _hubforge.fulfillment"
        ),
        pending
    );
}

/// Modification times of every file under `dir`.
fn mtimes(dir: &Path) -> std::collections::BTreeMap<String, std::time::SystemTime> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .to_string(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect()
}

#[test]
fn deliver_rewrites_exactly_the_corrected_partitions_throttled_and_held_until_resumed() {
    let dir = built_example();
    let run = |args: &[&str]| succeeds(dir.path(), args);
    // The first delivery writes every product in full; partner_bi is paused.
    run(&["deliver"]);
    let finance = dir.path().join("exports/finance");
    assert!(!dir.path().join("exports/partner_bi").exists());
    let before = mtimes(&finance);
    std::thread::sleep(std::time::Duration::from_millis(20));
    common::fix_pricing(dir.path());
    run(&common::QUARTER_BACKFILL);
    // finance takes 90 days per delivery: Q4 (92 days) takes two.
    let first = run(&["deliver", "finance"]);
    assert!(
        first.contains("Delivered revenue_daily → finance: 2025-10-01..2025-12-30, 90 files"),
        "{first}"
    );
    assert!(
        first.contains("left for the next delivery (throttled): 2025-12-30..2026-01-01"),
        "{first}"
    );
    let second = run(&["deliver", "finance"]);
    assert!(
        second.contains("Delivered revenue_daily → finance: 2025-12-30..2026-01-01, 2 files"),
        "{second}"
    );
    assert_eq!(run(&["deliver", "finance"]), "Nothing to deliver.\n");
    // Exactly the corrected partitions were rewritten, nothing else.
    let after = mtimes(&finance);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(f, t)| before.get(*f) != Some(t))
        .map(|(f, _)| f)
        .collect();
    let daily = changed
        .iter()
        .filter(|f| f.starts_with("revenue_daily/"))
        .count();
    let monthly: Vec<&str> = changed
        .iter()
        .filter(|f| f.starts_with("revenue_monthly/"))
        .map(|f| f.as_str())
        .collect();
    assert_eq!(daily, 92, "{changed:?}");
    assert_eq!(
        monthly,
        [
            "revenue_monthly/month=2025-10/part.parquet",
            "revenue_monthly/month=2025-11/part.parquet",
            "revenue_monthly/month=2025-12/part.parquet"
        ]
    );
    assert!(changed.iter().all(|f| !f.starts_with("payments_daily/")));
    // A partition holds exactly the published rows of its day; a sum of
    // integers (a HUGEINT) is written exactly, as DECIMAL(38, 0), not as a
    // DOUBLE (Parquet has no 128-bit integers).
    let file = finance.join("revenue_daily/day=2025-11-15/part.parquet");
    assert_eq!(
        query(
            dir.path(),
            &format!(
                "SELECT column_type FROM (DESCRIBE SELECT * FROM read_parquet('{}')) \
                 WHERE column_name = 'items_sold'",
                file.display()
            )
        ),
        [["DECIMAL(38,0)"]]
    );
    let delivered = format!(
        "SELECT * FROM read_parquet('{}', hive_partitioning = false)",
        file.display()
    );
    let published = "SELECT * FROM main.revenue_daily WHERE order_date = DATE '2025-11-15'";
    assert_eq!(
        query(
            dir.path(),
            &format!(
                "SELECT (SELECT count(*) FROM ({delivered}))::VARCHAR, \
                 (SELECT count(*) FROM ({published}))::VARCHAR, \
                 (SELECT count(*) FROM ({delivered} EXCEPT {published}))::VARCHAR, \
                 (SELECT count(*) FROM ({published} EXCEPT {delivered}))::VARCHAR"
            )
        ),
        [["11", "11", "0", "0"]]
    );
    // partner_bi held everything; resumed, it receives it.
    assert!(!dir.path().join("exports/partner_bi").exists());
    run(&["fulfillment", "--resume", "partner_bi"]);
    let out = run(&["deliver", "partner_bi"]);
    assert!(
        out.contains("Delivered revenue_monthly → partner_bi: in full"),
        "{out}"
    );
    assert!(
        dir.path()
            .join("exports/partner_bi/revenue_monthly/month=2025-12/part.parquet")
            .exists()
    );
}

#[test]
fn a_manifest_file_lost_after_the_commit_is_written_again_from_state() {
    let dir = built_example();
    let files = manifests(dir.path());
    assert_eq!(files.len(), 1);
    let path = std::fs::read_dir(dir.path().join("target/manifests"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&path).unwrap();
    let out = hubforge(dir.path(), &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(manifests(dir.path()), files);
}

#[test]
fn a_delivery_killed_midway_leaves_each_partition_old_or_new_and_the_rerun_completes() {
    let dir = built_example();
    let ok = |args: &[&str]| succeeds(dir.path(), args);
    ok(&["deliver", "finance"]);
    common::fix_pricing(dir.path());
    ok(&[
        "build",
        "--backfill",
        "--start",
        "2025-12-01",
        "--end",
        "2026-01-01",
        "--select",
        "int_order_lines_priced+",
    ]);
    // Killed after the 10th partition of the first product it writes.
    common::kill_at(dir.path(), "deliver:10", &["deliver", "finance"]);
    let root = dir.path().join("exports/finance");
    let leftovers: Vec<_> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.len() <= 1, "{leftovers:?}");
    // Every partition file reads whole (old or new), and the rerun delivers the rest.
    let unreadable = query(
        dir.path(),
        &format!(
            "SELECT count(*)::VARCHAR FROM read_parquet('{}/revenue_daily/*/part.parquet', hive_partitioning = false)",
            root.display()
        ),
    );
    assert_ne!(unreadable, [["0"]]);
    let out = ok(&["deliver", "finance"]);
    assert!(
        out.contains("Delivered revenue_daily → finance: 2025-12-01..2026-01-01"),
        "{out}"
    );
    assert_eq!(ok(&["deliver", "finance"]), "Nothing to deliver.\n");
    let published = "SELECT * FROM main.revenue_daily WHERE order_date >= DATE '2025-12-01'";
    let delivered = format!(
        "SELECT * FROM read_parquet('{}/revenue_daily/day=2025-12-*/part.parquet', hive_partitioning = false)",
        root.display()
    );
    assert_eq!(
        query(
            dir.path(),
            &format!(
                "SELECT (SELECT count(*) FROM ({delivered} EXCEPT {published}))::VARCHAR, \
                 (SELECT count(*) FROM ({published} EXCEPT {delivered}))::VARCHAR"
            )
        ),
        [["0", "0"]]
    );
}

#[test]
fn a_throttle_of_n_intervals_delivers_a_twelve_month_backfill_in_ceil_12_over_n_deliveries() {
    let dir = built_example();
    edit(
        dir.path(),
        "hubforge.toml",
        "max_intervals_per_delivery = 90",
        "max_intervals_per_delivery = 5",
    );
    let ok = |args: &[&str]| succeeds(dir.path(), args);
    ok(&["deliver", "finance"]);
    ok(&[
        "build",
        "--backfill",
        "--start",
        "2025-01-01",
        "--end",
        "2026-01-01",
        "--select",
        "revenue_monthly",
    ]);
    let mut deliveries = 0;
    loop {
        let out = ok(&["deliver", "finance"]);
        if out == "Nothing to deliver.\n" {
            break;
        }
        assert!(out.contains("revenue_monthly → finance"), "{out}");
        deliveries += 1;
        assert!(deliveries <= 3, "{out}");
    }
    assert_eq!(deliveries, 3); // ceil(12 / 5)
}

#[test]
fn a_manifest_snapshot() {
    let dir = built_example();
    let run = build_json(
        dir.path(),
        &[
            "--backfill",
            "--start",
            "2025-12-01",
            "--end",
            "2026-01-01",
            "--select",
            "revenue_monthly",
        ],
    );
    let m = manifests(dir.path())
        .into_iter()
        .find(|m| m["run_id"] == run["run_id"])
        .expect("this run's manifest");
    assert_valid(dir.path(), &m);
    let text = serde_json::to_string_pretty(&m).unwrap();
    insta::with_settings!({ filters => vec![
        (r#""run_id": "[^"]+""#, r#""run_id": "[run]""#),
        (r#""(started_at|finished_at)": "[^"]+""#, r#""$1": "[time]""#),
        (r#""command": "[^"]+""#, r#""command": "[command]""#),
        (r#""fingerprint": "[^"]+""#, r#""fingerprint": "[fp]""#),
        (r#""checksum": "[^"]+""#, r#""checksum": "[checksum]""#),
    ]}, {
        insta::assert_snapshot!(text);
    });
}

#[test]
fn a_killed_build_writes_no_manifest_and_no_pending_delivery() {
    let dir = built_example();
    let before = manifests(dir.path()).len();
    let pending = query(
        dir.path(),
        "SELECT count(*)::VARCHAR FROM _hubforge.fulfillment",
    );
    common::kill_at(
        dir.path(),
        "publish:1",
        &[
            "build",
            "--backfill",
            "--start",
            "2025-12-01",
            "--end",
            "2026-01-01",
            "--select",
            "revenue_daily",
        ],
    );
    assert_eq!(manifests(dir.path()).len(), before);
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*)::VARCHAR FROM _hubforge.fulfillment"
        ),
        pending
    );
    assert_eq!(
        query(
            dir.path(),
            "SELECT count(*)::VARCHAR FROM _hubforge.manifests"
        ),
        [[before.to_string()]]
    );
}
