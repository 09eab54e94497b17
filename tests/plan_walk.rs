//! Table-driven tests of the planner's walk on a small project with state
//! built by hand: which models get work, why, for which intervals, and what
//! stays out of scope. Pure: no warehouse is involved.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, NaiveDateTime};
use hubforge::fingerprint;
use hubforge::interval::{Interval, IntervalSet, Unit};
use hubforge::plan::{PlanOptions, plan};
use hubforge::state::{IntervalRecord, PublishedModel, SourceSnapshot, State};
use hubforge::workspace::Workspace;

fn t(d: &str) -> NaiveDateTime {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn iv(a: &str, b: &str) -> Interval {
    Interval::new(t(a), t(b)).unwrap()
}

const START: &str = "2025-01-01";
const END: &str = "2025-04-01";

/// src → daily (day) → week3 (day, window 3), monthly (month), whole (table);
/// src → v (view) → through_view (day).
fn project() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("models")).unwrap();
    std::fs::write(
        p.join("hubforge.toml"),
        format!(
            "[project]\nname = \"w\"\nstart = \"{START}\"\nend = \"{END}\"\n\n[sources.src]\npath = \"src.csv\"\ntime_column = \"d\"\n"
        ),
    )
    .unwrap();
    let inc = |unit: &str, window: u32| {
        format!(
            "/* @hubforge\nkind = \"incremental\"\ntime_column = \"d\"\nunit = \"{unit}\"\nwindow = {window}\n*/\n"
        )
    };
    let files = [
        (
            "daily",
            format!(
                "{}SELECT d, v FROM src WHERE d >= {{{{ start }}}} AND d < {{{{ end }}}}",
                inc("day", 1)
            ),
        ),
        (
            "week3",
            format!(
                "{}SELECT d, v FROM daily WHERE d >= {{{{ start }}}} AND d < {{{{ end }}}}",
                inc("day", 3)
            ),
        ),
        (
            "monthly",
            format!(
                "{}SELECT d, v FROM daily WHERE d >= {{{{ start }}}} AND d < {{{{ end }}}}",
                inc("month", 1)
            ),
        ),
        ("whole", "SELECT count(*) AS n FROM daily".to_string()),
        (
            "v",
            "/* @hubforge\nkind = \"view\"\n*/\nSELECT d, v FROM src".to_string(),
        ),
        (
            "through_view",
            format!(
                "{}SELECT d, v FROM v WHERE d >= {{{{ start }}}} AND d < {{{{ end }}}}",
                inc("day", 1)
            ),
        ),
    ];
    for (name, sql) in files {
        std::fs::write(p.join(format!("models/{name}.sql")), sql).unwrap();
    }
    let ws = Workspace::load(p, &[]).expect("project loads");
    (dir, ws)
}

/// Source snapshot with one content hash per day; `changed` days differ.
fn snapshot(changed: &[&str]) -> SourceSnapshot {
    let days = IntervalSet::single(iv(START, END));
    SourceSnapshot {
        units: days
            .units(Unit::Day)
            .map(|u| {
                let changed = changed.iter().any(|d| t(d) == u.start());
                (u, (3, if changed { "new" } else { "old" }.to_string()))
            })
            .collect(),
        ..SourceSnapshot::default()
    }
}

/// State after a full build with the current logic, without `missing` intervals.
fn built_state(ws: &Workspace, missing: &[(&str, Interval)]) -> State {
    let schemas = BTreeMap::from([("src".to_string(), vec!["d".to_string(), "v".to_string()])]);
    let versions = fingerprint::versions(ws, &schemas, &State::default());
    let mut state = State {
        schema_version: Some(1),
        ..State::default()
    };
    let now = t(END);
    for (id, node) in ws.dag.nodes.iter().enumerate() {
        let key = node.name.key().to_string();
        let fp = versions[id].fingerprint.clone();
        state.models.insert(
            key.clone(),
            PublishedModel {
                kind: node.kind.as_str().to_string(),
                fingerprint: fp.clone(),
                metadata: versions[id].metadata.clone(),
                columns: versions[id].column_names(),
                data_table: String::new(),
                run_id: "r1".into(),
            },
        );
        if !node.kind.is_model() {
            continue;
        }
        let unit = ws.model(id).and_then(|(f, _)| f.config.unit);
        let whole = IntervalSet::single(iv(START, END));
        let mut set = match unit {
            Some(u) => IntervalSet::from_intervals(whole.units(u).filter(|x| x.end() <= now)),
            None => whole,
        };
        for (m, gone) in missing {
            if *m == key {
                set = set.subtract(&IntervalSet::single(*gone));
            }
        }
        let records = set
            .iter()
            .map(|&interval| IntervalRecord {
                interval,
                fingerprint: fp.clone(),
                built_fingerprint: fp.clone(),
                run_id: "r1".into(),
                rows: 1,
                checksum: "c".into(),
            })
            .collect();
        state.intervals.insert(key, records);
    }
    state.sources.insert("src".into(), snapshot(&[]));
    state
}

/// What a case expects of one model: None = no work; Some((change, full, intervals)).
type Want = Option<(&'static str, bool, Vec<(&'static str, &'static str)>)>;

struct Case {
    name: &'static str,
    changed_days: &'static [&'static str],
    missing: Vec<(&'static str, Interval)>,
    select: Option<&'static [&'static str]>,
    range: Option<Interval>,
    backfill: bool,
    want: Vec<(&'static str, Want)>,
    out_of_scope: Vec<&'static str>,
}

fn run(case: &Case) {
    let (_dir, ws) = project();
    let schemas = BTreeMap::from([("src".to_string(), vec!["d".to_string(), "v".to_string()])]);
    let state = built_state(&ws, &case.missing);
    let versions = fingerprint::versions(&ws, &schemas, &state);
    let now_sources = BTreeMap::from([("src".to_string(), snapshot(case.changed_days))]);
    let selected = case.select.map(|names| {
        names
            .iter()
            .map(|n| ws.dag.lookup(n).expect("known model"))
            .collect::<BTreeSet<_>>()
    });
    let options = PlanOptions {
        selected,
        range: case.range,
        backfill: case.backfill,
        now: t(END),
    };
    let p = plan(&ws, &versions, &state, &now_sources, &options);
    for (model, want) in &case.want {
        let got = p.models.iter().find(|w| w.name == *model);
        match (got, want) {
            (None, None) => {}
            (Some(w), Some((change, full, intervals))) => {
                assert_eq!(
                    w.change.as_str(),
                    *change,
                    "{}: change of {model} ({})",
                    case.name,
                    w.reason
                );
                assert_eq!(w.full, *full, "{}: full of {model}", case.name);
                let want_set = IntervalSet::from_intervals(intervals.iter().map(|(a, b)| iv(a, b)));
                assert_eq!(w.intervals, want_set, "{}: intervals of {model}", case.name);
            }
            _ => panic!("{}: {model} planned {got:?}, expected {want:?}", case.name),
        }
    }
    let mut left: Vec<String> = p.out_of_scope.iter().map(|w| w.name.to_string()).collect();
    left.sort();
    assert_eq!(left, case.out_of_scope, "{}: out of scope", case.name);
}

#[test]
fn the_walk_plans_what_each_change_reaches() {
    let cases = vec![
        Case {
            name: "nothing changed",
            changed_days: &[],
            missing: vec![],
            select: None,
            range: None,
            backfill: false,
            want: vec![
                ("daily", None),
                ("week3", None),
                ("whole", None),
                ("v", None),
            ],
            out_of_scope: vec![],
        },
        Case {
            name: "a late source day flows down with windows and units",
            changed_days: &["2025-02-10"],
            missing: vec![],
            select: None,
            range: None,
            backfill: false,
            want: vec![
                (
                    "daily",
                    Some(("source_changed", false, vec![("2025-02-10", "2025-02-11")])),
                ),
                (
                    "week3",
                    Some(("source_changed", false, vec![("2025-02-10", "2025-02-13")])),
                ),
                (
                    "monthly",
                    Some(("source_changed", false, vec![("2025-02-01", "2025-03-01")])),
                ),
                ("whole", Some(("source_changed", true, vec![]))),
                // A view holds no data: it is not rebuilt, its reader is.
                ("v", None),
                (
                    "through_view",
                    Some(("source_changed", false, vec![("2025-02-10", "2025-02-11")])),
                ),
            ],
            out_of_scope: vec![],
        },
        Case {
            name: "a missing day is built and flows down as new upstream intervals",
            changed_days: &[],
            missing: vec![("daily", iv("2025-03-05", "2025-03-06"))],
            select: None,
            range: None,
            backfill: false,
            want: vec![
                (
                    "daily",
                    Some(("missing", false, vec![("2025-03-05", "2025-03-06")])),
                ),
                (
                    "week3",
                    Some(("missing", false, vec![("2025-03-05", "2025-03-08")])),
                ),
                (
                    "monthly",
                    Some(("missing", false, vec![("2025-03-01", "2025-04-01")])),
                ),
                ("through_view", None),
            ],
            out_of_scope: vec![],
        },
        Case {
            name: "a selection leaves the rest out of scope, never dropped",
            changed_days: &["2025-02-10"],
            missing: vec![],
            select: Some(&["daily", "week3"]),
            range: None,
            backfill: false,
            want: vec![
                (
                    "daily",
                    Some(("source_changed", false, vec![("2025-02-10", "2025-02-11")])),
                ),
                (
                    "week3",
                    Some(("source_changed", false, vec![("2025-02-10", "2025-02-13")])),
                ),
                ("monthly", None),
                ("whole", None),
            ],
            out_of_scope: vec!["monthly", "through_view", "whole"],
        },
        Case {
            name: "a range covers whole units of each model",
            changed_days: &[],
            missing: vec![],
            select: Some(&["daily", "monthly"]),
            range: Some(iv("2025-02-10", "2025-02-12")),
            backfill: true,
            want: vec![
                (
                    "daily",
                    Some(("restate", false, vec![("2025-02-10", "2025-02-12")])),
                ),
                (
                    "monthly",
                    Some(("restate", false, vec![("2025-02-01", "2025-03-01")])),
                ),
                ("week3", None),
            ],
            // The restatement of daily reaches readers outside the selection.
            out_of_scope: vec!["week3", "whole"],
        },
    ];
    for case in &cases {
        run(case);
    }
}
