//! Table-driven tests of change categories: two versions of a small project,
//! and for each model the category of its change, the reason shown, and
//! whether the change reaches it at all. Pure: no warehouse is involved.

use std::collections::{BTreeMap, HashMap};

use hubforge::change::{ChangeKind, Comparer, VersionLookup};
use hubforge::fingerprint::{self, ModelVersion};
use hubforge::state::State;
use hubforge::workspace::Workspace;

const TOML: &str = "[project]\nname = \"t\"\nstart = \"2025-01-01\"\nend = \"2025-03-01\"\n\n\
                    [sources.raw]\npath = \"raw.csv\"\ntime_column = \"d\"\n";

/// The project every case starts from: `p` reads the source, `v` is a view of
/// `p`, `c` sums `amount`, `n` reads only `id`, `s` reads `p` with `*`.
fn base() -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("p", "/* @hubforge\nkind = \"incremental\"\ntime_column = \"d\"\nunit = \"day\"\n*/\nSELECT id, d, amount * 1 AS amount, note FROM raw WHERE d >= {{ start }} AND d < {{ end }}".to_string()),
        ("v", "/* @hubforge\nkind = \"view\"\n*/\nSELECT * FROM p".to_string()),
        ("c", "/* @hubforge\nkind = \"incremental\"\ntime_column = \"d\"\nunit = \"day\"\n*/\nSELECT d, sum(amount) AS total FROM v WHERE d >= {{ start }} AND d < {{ end }} GROUP BY d".to_string()),
        ("n", "SELECT id, d FROM p".to_string()),
        ("s", "SELECT * FROM p".to_string()),
    ])
}

fn versions_of(
    files: &BTreeMap<&str, String>,
    macros: &str,
) -> (tempfile::TempDir, Vec<ModelVersion>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::create_dir_all(dir.path().join("macros")).unwrap();
    std::fs::write(dir.path().join("hubforge.toml"), TOML).unwrap();
    std::fs::write(dir.path().join("macros/m.sql"), macros).unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(format!("models/{name}.sql")), sql).unwrap();
    }
    let ws = Workspace::load(dir.path(), &[]).expect("project loads");
    let schemas = BTreeMap::from([(
        "raw".to_string(),
        ["id", "d", "amount", "note"].map(String::from).to_vec(),
    )]);
    let v = fingerprint::versions(&ws, &schemas, &State::default());
    (dir, v)
}

struct Both(HashMap<(String, String), ModelVersion>);

impl VersionLookup for Both {
    fn version(&self, model: &str, fingerprint: &str) -> Option<&ModelVersion> {
        self.0.get(&(model.to_string(), fingerprint.to_string()))
    }
}

/// What happens to each model: None when the change does not reach it.
fn changes(
    edit: &dyn Fn(&mut BTreeMap<&'static str, String>),
    macros: (&str, &str),
) -> BTreeMap<String, Option<(ChangeKind, String)>> {
    let before = base();
    let mut after = base();
    edit(&mut after);
    let (_d1, old) = versions_of(&before, macros.0);
    let (_d2, new) = versions_of(&after, macros.1);
    let all = Both(
        old.iter()
            .chain(new.iter())
            .map(|v| ((v.name.key().to_string(), v.fingerprint.clone()), v.clone()))
            .collect(),
    );
    let mut comparer = Comparer::new(&all);
    let mut out = BTreeMap::new();
    for n in new
        .iter()
        .filter(|v| !matches!(v.kind.as_str(), "source" | "seed"))
    {
        let Some(o) = old.iter().find(|o| o.name == n.name) else {
            continue;
        };
        let change = comparer.compare(&o.fingerprint, n);
        out.insert(
            n.name.to_string(),
            change
                .rebuild
                .then(|| (change.category, change.reason.clone())),
        );
    }
    out
}

fn set(files: &mut BTreeMap<&'static str, String>, model: &'static str, from: &str, to: &str) {
    let text = files.get_mut(model).unwrap();
    assert!(text.contains(from), "{model} has no {from:?}");
    *text = text.replacen(from, to, 1);
}

type Edit = fn(&mut BTreeMap<&'static str, String>);
/// Per model: its category and a part of its reason, or None when unreached.
type Expected = Vec<(&'static str, Option<(ChangeKind, &'static str)>)>;

#[test]
fn categories_and_what_reaches_each_child() {
    use ChangeKind::*;
    // (case, edit, [(model, Some((category, reason contains)) | None)])
    let cases: Vec<(&str, Edit, Expected)> = vec![
        (
            "reformatting changes nothing",
            |f| set(f, "p", "SELECT id, d,", "SELECT\n   id,   d,"),
            vec![
                ("p", None),
                ("v", None),
                ("c", None),
                ("n", None),
                ("s", None),
            ],
        ),
        (
            "a column's expression reaches only its readers",
            |f| set(f, "p", "amount * 1", "amount * 2"),
            vec![
                ("p", Some((Breaking, "changes amount"))),
                ("v", Some((Indirect, "reads p.amount"))),
                ("c", Some((Indirect, "reads v.amount"))),
                ("n", None),
                ("s", Some((Indirect, "reads p.amount"))),
            ],
        ),
        (
            "a WHERE reaches every reader",
            |f| set(f, "p", "WHERE d >=", "WHERE amount > 0 AND d >="),
            vec![
                ("p", Some((Breaking, "WHERE changed"))),
                ("n", Some((Indirect, "whose rows change"))),
                ("c", Some((Indirect, "rows change"))),
            ],
        ),
        (
            "an added column rebuilds the model and its star readers only",
            |f| set(f, "p", ", note FROM", ", note, amount * 3 AS triple FROM"),
            vec![
                ("p", Some((NonBreaking, "adds triple"))),
                ("v", Some((NonBreaking, "adds triple (read through *)"))),
                ("s", Some((NonBreaking, "adds triple (read through *)"))),
                ("n", None),
                ("c", None),
            ],
        ),
        (
            "a changed unit is breaking even when forward-only",
            |f| {
                set(
                    f,
                    "p",
                    "unit = \"day\"",
                    "unit = \"month\"\nforward_only = true",
                );
            },
            vec![("p", Some((Breaking, "forward_only does not apply")))],
        ),
        (
            "forward-only logic rebuilds nothing",
            |f| {
                set(
                    f,
                    "p",
                    "unit = \"day\"",
                    "unit = \"day\"\nforward_only = true",
                );
                set(f, "p", "amount * 1", "amount * 2");
            },
            vec![("p", None), ("c", None)],
        ),
        (
            "a description is metadata",
            |f| {
                set(
                    f,
                    "n",
                    "SELECT id",
                    "/* @hubforge\nkind = \"table\"\ndescription = \"ids\"\n*/\nSELECT id",
                )
            },
            vec![("n", None)],
        ),
    ];
    for (name, edit, expect) in cases {
        let got = changes(&edit, ("", ""));
        for (model, want) in expect {
            let have = got
                .get(model)
                .unwrap_or_else(|| panic!("{name}: no {model}"));
            match (have, want) {
                (None, None) => {}
                (Some((k, reason)), Some((wk, wr))) => {
                    assert_eq!(*k, wk, "{name}: category of {model} ({reason})");
                    assert!(
                        reason.contains(wr),
                        "{name}: reason of {model} is {reason:?}, expected {wr:?}"
                    );
                }
                _ => panic!("{name}: {model} is {have:?}, expected {want:?}"),
            }
        }
    }
}

#[test]
fn a_comment_in_a_macro_rebuilds_nothing() {
    let uses = |f: &mut BTreeMap<&'static str, String>| {
        set(
            f,
            "n",
            "SELECT id, d",
            "SELECT {{ twice(\"id\") }} AS id, d",
        );
    };
    let before = "{% macro twice(c) %}{{ c }} * 2{% endmacro %}";
    let after =
        "{% macro twice(c) %}{# ids are doubled for the legacy export #}{{ c }} * 2{% endmacro %}";
    let mut files = base();
    uses(&mut files);
    let (_d1, old) = versions_of(&files, before);
    let (_d2, new) = versions_of(&files, after);
    let o = old.iter().find(|v| v.name == "n").unwrap();
    let n = new.iter().find(|v| v.name == "n").unwrap();
    assert_ne!(
        o.fingerprint, n.fingerprint,
        "the macro's text is part of the logic"
    );
    let all = Both(
        [o, n]
            .into_iter()
            .map(|v| ((v.name.key().to_string(), v.fingerprint.clone()), v.clone()))
            .collect(),
    );
    let change = Comparer::new(&all).compare(&o.fingerprint, n);
    assert!(!change.rebuild, "rebuilt for a comment: {}", change.reason);
}
