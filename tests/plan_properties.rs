//! Property tests of the planner on random small DAGs: the plan is complete
//! (every stale day of every model is planned) and minimal (nothing else is),
//! against a day-by-day reference written independently of the interval math.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Days, NaiveDate, NaiveDateTime};
use hubforge::fingerprint;
use hubforge::interval::{Interval, IntervalSet, Unit};
use hubforge::plan::{PlanOptions, plan};
use hubforge::state::{IntervalRecord, PublishedModel, SourceSnapshot, State};
use hubforge::workspace::Workspace;
use proptest::prelude::*;

const DAYS: u32 = 75; // 2025-01-01 .. 2025-03-17: crosses two month boundaries
const COMPLETE_MONTH_DAYS: u32 = 59; // January and February

fn day(i: u32) -> NaiveDateTime {
    (NaiveDate::from_ymd_opt(2025, 1, 1).unwrap() + Days::new(i as u64))
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn day_index(t: NaiveDateTime) -> u32 {
    (t.date() - NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()).num_days() as u32
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ModelKind {
    Daily(u32), // window
    Monthly,
    Table,
}

#[derive(Debug, Clone)]
struct Case {
    /// Per model: kind and parents (0 = the source, i = model i-1).
    models: Vec<(ModelKind, Vec<usize>)>,
    /// Per model: days missing from state (daily models) or whether a table is unbuilt.
    missing: Vec<BTreeSet<u32>>,
    changed_source_days: BTreeSet<u32>,
    /// `--backfill --start a --end b` (the first field is unused).
    restate: Option<(usize, u32, u32)>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (2usize..6)
        .prop_flat_map(|n| {
            let kinds = prop::collection::vec(
                prop_oneof![
                    (1u32..4).prop_map(ModelKind::Daily),
                    Just(ModelKind::Monthly),
                    Just(ModelKind::Table)
                ],
                n,
            );
            let parents = (0..n)
                .map(|i| {
                    prop::collection::btree_set(0..=i, 1..=2.min(i + 1))
                        .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                })
                .collect::<Vec<_>>();
            let missing = prop::collection::vec(prop::collection::btree_set(0..DAYS, 0..3), n);
            let changed = prop::collection::btree_set(0..DAYS, 0..3);
            let restate = prop::option::of((0..n, 0..DAYS, 1u32..20));
            (kinds, parents, missing, changed, restate)
        })
        .prop_map(|(kinds, parents, missing, changed, restate)| Case {
            models: kinds.into_iter().zip(parents).collect(),
            missing,
            changed_source_days: changed,
            restate: restate.map(|(m, a, len)| (m, a, (a + len).min(DAYS))),
        })
}

fn model_name(i: usize) -> String {
    format!("m{i}")
}

fn write_project(dir: &std::path::Path, case: &Case) {
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::write(
        dir.join("hubforge.toml"),
        format!(
            "[project]\nname = \"prop\"\nstart = \"2025-01-01\"\nend = \"{}\"\n\n[sources.src]\npath = \"src.csv\"\ntime_column = \"d\"\n",
            day(DAYS).date()
        ),
    )
    .unwrap();
    for (i, (kind, parents)) in case.models.iter().enumerate() {
        let header = match kind {
            ModelKind::Daily(w) => format!(
                "kind = \"incremental\"\ntime_column = \"d\"\nunit = \"day\"\nwindow = {w}\n"
            ),
            ModelKind::Monthly => {
                "kind = \"incremental\"\ntime_column = \"d\"\nunit = \"month\"\n".to_string()
            }
            ModelKind::Table => "kind = \"table\"\n".to_string(),
        };
        let from: Vec<String> = parents
            .iter()
            .map(|&p| {
                if p == 0 {
                    "src".to_string()
                } else {
                    model_name(p - 1)
                }
            })
            .collect();
        let sql = from
            .iter()
            .map(|f| format!("SELECT d, v FROM {f}"))
            .collect::<Vec<_>>()
            .join("\nUNION ALL\n");
        std::fs::write(
            dir.join(format!("models/{}.sql", model_name(i))),
            format!("/* @hubforge\n{header}*/\n{sql}\n"),
        )
        .unwrap();
    }
}

/// The reference: the days planned per model (or a full rebuild), computed day by
/// day. With a restatement `(a, b)`, every model is restated on `[a, b)` (widened
/// to whole months for monthly models) and only work inside that range is planned.
fn reference(case: &Case) -> Vec<(bool, BTreeSet<u32>)> {
    let all: BTreeSet<u32> = (0..DAYS).collect();
    let month_of = |d: u32| day(d).date().month();
    let in_range = |d: u32, monthly: bool| match case.restate {
        None => true,
        Some((_, a, b)) if monthly => (month_of(a)..=month_of(b - 1)).contains(&month_of(d)),
        Some((_, a, b)) => d >= a && d < b,
    };
    // Data-stale days each node passes on (node 0 = the source), and whether "full".
    let mut flows: Vec<(bool, BTreeSet<u32>)> = vec![(false, case.changed_source_days.clone())];
    let mut out = Vec::new();
    for (i, (kind, parents)) in case.models.iter().enumerate() {
        let restated = case.restate.is_some();
        let (full, days) = match kind {
            ModelKind::Table => {
                let stale = !case.missing[i].is_empty()
                    || parents
                        .iter()
                        .any(|&p| flows[p].0 || !flows[p].1.is_empty())
                    || restated;
                (stale, BTreeSet::new())
            }
            ModelKind::Daily(w) => {
                let mut s: BTreeSet<u32> = case.missing[i].clone();
                if restated {
                    s.extend(all.iter().copied());
                }
                for &p in parents {
                    let (pf, pd) = &flows[p];
                    if *pf {
                        s.extend(all.iter().copied());
                    }
                    for &d in pd {
                        s.extend((d..d + w).filter(|x| *x < DAYS));
                    }
                }
                (
                    false,
                    s.into_iter().filter(|&d| in_range(d, false)).collect(),
                )
            }
            ModelKind::Monthly => {
                let mut months: BTreeSet<u32> =
                    case.missing[i].iter().map(|&d| month_of(d)).collect();
                if restated {
                    months.extend(all.iter().map(|&d| month_of(d)));
                }
                for &p in parents {
                    let (pf, pd) = &flows[p];
                    if *pf {
                        months.extend(all.iter().map(|&d| month_of(d)));
                    }
                    months.extend(pd.iter().map(|&d| month_of(d)));
                }
                // Only complete months exist: March is cut short by the end of history.
                let days: BTreeSet<u32> = all
                    .iter()
                    .copied()
                    .filter(|&d| d < COMPLETE_MONTH_DAYS && months.contains(&month_of(d)))
                    .collect();
                (
                    false,
                    days.into_iter().filter(|&d| in_range(d, true)).collect(),
                )
            }
        };
        flows.push((full, days.clone()));
        out.push((full, days));
    }
    out
}

fn days_of(set: &IntervalSet) -> BTreeSet<u32> {
    set.units(Unit::Day)
        .map(|iv| day_index(iv.start()))
        .filter(|&d| d < DAYS)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn plan_is_complete_and_minimal(case in case_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), &case);
        let ws = Workspace::load(dir.path(), &[]).expect("generated project loads");
        let schemas: BTreeMap<String, Vec<String>> = BTreeMap::from([("src".to_string(), vec!["d".to_string(), "v".to_string()])]);
        let versions = fingerprint::versions(&ws, &schemas, &State::default());

        // State: everything built with the current logic, minus the missing days.
        let mut state = State { schema_version: Some(1), ..State::default() };
        let now = day(DAYS);
        for (i, (kind, _)) in case.models.iter().enumerate() {
            let name = model_name(i);
            let id = ws.dag.lookup(&name).unwrap();
            let fp = versions[id].fingerprint.clone();
            state.models.insert(name.clone(), PublishedModel {
                kind: if *kind == ModelKind::Table { "table" } else { "incremental" }.to_string(),
                fingerprint: fp.clone(),
                metadata: versions[id].metadata.clone(),
                columns: vec!["d".into(), "v".into()],
                data_table: String::new(),
                run_id: "r1".into(),
            });
            let record = |iv: Interval| IntervalRecord {
                interval: iv, fingerprint: fp.clone(), built_fingerprint: fp.clone(),
                run_id: "r1".into(), rows: 1, checksum: "c".into(),
            };
            let units: Vec<Interval> = match kind {
                ModelKind::Table => {
                    if case.missing[i].is_empty() { vec![Interval::new(day(0), now).unwrap()] } else { vec![] }
                }
                ModelKind::Daily(_) => (0..DAYS).filter(|d| !case.missing[i].contains(d))
                    .map(|d| Interval::unit_at(Unit::Day, day(d))).collect(),
                ModelKind::Monthly => {
                    let missing_months: BTreeSet<u32> = case.missing[i].iter().map(|&d| day(d).date().month()).collect();
                    IntervalSet::single(Interval::new(day(0), now).unwrap()).units(Unit::Month)
                        .filter(|iv| iv.end() <= now && !missing_months.contains(&iv.start().date().month()))
                        .collect()
                }
            };
            if *kind == ModelKind::Table && units.is_empty() {
                state.models.remove(&name);
            }
            state.intervals.insert(name, units.into_iter().map(record).collect());
        }
        let id = ws.dag.lookup("src").unwrap();
        state.models.insert("src".into(), PublishedModel {
            kind: "source".into(), fingerprint: versions[id].fingerprint.clone(), metadata: String::new(),
            columns: vec![], data_table: String::new(), run_id: "r1".into(),
        });
        let snapshot = |changed: &BTreeSet<u32>| SourceSnapshot {
            units: (0..DAYS).map(|d| (Interval::unit_at(Unit::Day, day(d)), (10, if changed.contains(&d) { "new" } else { "old" }.to_string()))).collect(),
            ..SourceSnapshot::default()
        };
        state.sources.insert("src".into(), snapshot(&BTreeSet::new()));
        let now_sources = BTreeMap::from([("src".to_string(), snapshot(&case.changed_source_days))]);

        let options = PlanOptions {
            selected: None,
            range: case.restate.map(|(_, a, b)| Interval::new(day(a), day(b)).unwrap()),
            backfill: case.restate.is_some(),
            now,
        };
        let p = plan(&ws, &versions, &state, &now_sources, &options);
        let expected = reference(&case);
        for (i, (full, days)) in expected.iter().enumerate() {
            let name = model_name(i);
            let work = p.models.iter().find(|w| w.name == name);
            match (work, full, days.is_empty()) {
                (None, false, true) => {}
                (Some(w), true, _) => prop_assert!(w.full, "{name} should be rebuilt whole"),
                (Some(w), false, false) => prop_assert_eq!(&days_of(&w.intervals), days, "{} days", name),
                (w, _, _) => prop_assert!(false, "{name}: planned {w:?}, expected full={full} days={days:?}"),
            }
        }
    }
}
