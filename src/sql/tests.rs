use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn refs_of(sql: &str) -> Vec<String> {
    let q = parse_query(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    q.table_refs().iter().map(|r| r.parts.join(".")).collect()
}

/// (sql, expected references: parts joined by '.', in source order)
const DEPENDENCIES: &[(&str, &[&str])] = &[
    // plain reads and joins
    ("SELECT * FROM orders", &["orders"]),
    (
        "SELECT a FROM stg_orders o JOIN customers c ON o.cid = c.id",
        &["stg_orders", "customers"],
    ),
    ("SELECT * FROM t t1 JOIN t t2 ON t1.id = t2.id", &["t", "t"]),
    ("SELECT * FROM a, b, c WHERE a.id = b.id", &["a", "b", "c"]),
    (
        "SELECT * FROM (a JOIN b ON a.id = b.id) JOIN c ON c.id = a.id",
        &["a", "b", "c"],
    ),
    (
        "SELECT * FROM a LEFT JOIN b USING (id) FULL OUTER JOIN c USING (id)",
        &["a", "b", "c"],
    ),
    ("SELECT * FROM a ANTI JOIN b USING (id)", &["a", "b"]),
    ("SELECT * FROM a SEMI JOIN b ON a.id = b.id", &["a", "b"]),
    ("SELECT * FROM a NATURAL JOIN b", &["a", "b"]),
    ("SELECT 1 /* FROM fake */ FROM t -- JOIN fake2", &["t"]),
    // CTE scoping (checked against DuckDB 2.0)
    (
        "WITH orders AS (SELECT * FROM orders) SELECT * FROM orders",
        &["orders"],
    ),
    (
        "WITH a AS (SELECT * FROM src), b AS (SELECT * FROM a) SELECT * FROM b",
        &["src"],
    ),
    (
        "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a",
        &["b"],
    ),
    (
        "WITH Recent AS (SELECT * FROM t) SELECT * FROM RECENT",
        &["t"],
    ),
    (
        "WITH recent AS (SELECT * FROM t) SELECT * FROM \"Recent\"",
        &["t"],
    ),
    (
        "WITH orders AS (SELECT 1 AS id) SELECT * FROM main.orders",
        &["main.orders"],
    ),
    (
        "WITH c AS MATERIALIZED (SELECT * FROM t) SELECT * FROM c",
        &["t"],
    ),
    ("WITH c(a, b) AS (SELECT 1, 2) SELECT * FROM c", &[]),
    (
        "SELECT * FROM (WITH x AS (SELECT * FROM raw) SELECT * FROM x) s JOIN x ON true",
        &["raw", "x"],
    ),
    (
        "SELECT * FROM t WHERE id IN (WITH ids AS (SELECT id FROM u) SELECT id FROM ids)",
        &["t", "u"],
    ),
    (
        "WITH c AS (SELECT 1 AS id) SELECT * FROM t WHERE id IN (SELECT id FROM c)",
        &["t"],
    ),
    (
        "WITH x AS (SELECT 1 AS a) SELECT (WITH x AS (SELECT a + 1 AS a FROM x) SELECT a FROM x)",
        &[],
    ),
    (
        "WITH x AS (SELECT * FROM t) SELECT * FROM x UNION ALL SELECT * FROM x",
        &["t"],
    ),
    // recursive CTEs: only the recursive term of a top-level UNION sees the CTE
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        &[],
    ),
    (
        "WITH RECURSIVE orders AS (SELECT id FROM orders UNION ALL SELECT id + 1 FROM orders WHERE id < 3) SELECT * FROM orders",
        &["orders"],
    ),
    (
        "WITH RECURSIVE orders AS (SELECT id FROM orders) SELECT * FROM orders",
        &["orders"],
    ),
    (
        "WITH RECURSIVE r AS (SELECT 10 AS id UNION ALL SELECT id + 1 FROM (SELECT * FROM r) q WHERE id < 12) SELECT * FROM r",
        &[],
    ),
    (
        "WITH RECURSIVE o AS (SELECT 10 AS id UNION ALL SELECT id + 1 FROM o WHERE id < 12 UNION ALL SELECT id + 50 FROM o) SELECT * FROM o",
        &["o"],
    ),
    (
        "WITH RECURSIVE o AS ((SELECT 1 AS id) UNION ALL (SELECT id + 1 FROM o WHERE id < 3)) SELECT * FROM o",
        &[],
    ),
    (
        "WITH orders AS (SELECT 1 AS id UNION ALL SELECT id + 1 FROM orders) SELECT * FROM orders",
        &["orders"],
    ),
    (
        "WITH RECURSIVE o AS (SELECT 5 AS id INTERSECT SELECT id FROM o) SELECT * FROM o",
        &["o"],
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3), s AS (SELECT * FROM r) SELECT * FROM s JOIN t ON true",
        &["t"],
    ),
    // set operations
    ("SELECT a FROM x UNION SELECT a FROM y", &["x", "y"]),
    (
        "SELECT a FROM x UNION ALL SELECT a FROM y UNION ALL SELECT a FROM z",
        &["x", "y", "z"],
    ),
    ("SELECT a FROM x EXCEPT SELECT a FROM y", &["x", "y"]),
    ("SELECT a FROM x INTERSECT ALL SELECT a FROM y", &["x", "y"]),
    ("SELECT * FROM x UNION BY NAME SELECT * FROM y", &["x", "y"]),
    (
        "(SELECT a FROM x ORDER BY a LIMIT 1) UNION (SELECT a FROM y)",
        &["x", "y"],
    ),
    // subqueries everywhere
    (
        "SELECT * FROM t WHERE a > (SELECT avg(a) FROM u)",
        &["t", "u"],
    ),
    (
        "SELECT (SELECT max(b) FROM u WHERE u.id = t.id) AS m FROM t",
        &["u", "t"],
    ),
    (
        "SELECT * FROM t JOIN u ON u.id = t.id AND u.k IN (SELECT k FROM v)",
        &["t", "u", "v"],
    ),
    (
        "SELECT k, count(*) FROM t GROUP BY k HAVING count(*) > (SELECT count(*) FROM u)",
        &["t", "u"],
    ),
    (
        "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)",
        &["t", "u"],
    ),
    (
        "SELECT * FROM t WHERE id NOT IN (SELECT id FROM u) AND b = ANY (SELECT b FROM w)",
        &["t", "u", "w"],
    ),
    (
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM u) THEN 1 END AS flag FROM t",
        &["u", "t"],
    ),
    (
        "SELECT * FROM t ORDER BY (SELECT max(x) FROM u) LIMIT 3",
        &["t", "u"],
    ),
    (
        "SELECT * FROM (SELECT * FROM (SELECT * FROM deep) d1) d2",
        &["deep"],
    ),
    (
        "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id) l",
        &["t", "u"],
    ),
    (
        "SELECT * FROM t JOIN LATERAL (SELECT * FROM u WHERE u.id = t.id) l ON true",
        &["t", "u"],
    ),
    // table functions and files are not dependencies
    ("SELECT * FROM read_parquet('data/*.parquet')", &[]),
    (
        "SELECT * FROM read_csv('x.csv', header = true, columns = {'a': 'INT'})",
        &[],
    ),
    ("SELECT * FROM range(10) r(i) JOIN t ON t.id = r.i", &["t"]),
    ("SELECT * FROM t, unnest(t.l) AS u(x)", &["t"]),
    ("SELECT * FROM generate_series(1, 3)", &[]),
    ("SELECT * FROM 'data/x.csv'", &[]),
    ("SELECT unnest([1, 2, 3]) AS x FROM t", &["t"]),
    // names
    ("SELECT * FROM \"Stg_Orders\"", &["Stg_Orders"]),
    ("SELECT * FROM main.\"Stg_Orders\"", &["main.Stg_Orders"]),
    ("SELECT * FROM db.main.x", &["db.main.x"]),
    ("SELECT * FROM legacy.orders", &["legacy.orders"]),
    ("SELECT * FROM \"we\"\"ird\"", &["we\"ird"]),
    // clauses and DuckDB extras
    (
        "SELECT * FROM t QUALIFY row_number() OVER (PARTITION BY k ORDER BY ts DESC) = 1",
        &["t"],
    ),
    (
        "SELECT sum(x) OVER w FROM t WINDOW w AS (PARTITION BY k)",
        &["t"],
    ),
    ("SELECT * FROM t PIVOT (sum(x) FOR k IN ('a', 'b'))", &["t"]),
    ("SELECT * FROM t UNPIVOT (v FOR k IN (a, b))", &["t"]),
    ("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(id, name)", &[]),
    ("SELECT * FROM (VALUES (1)) v(id) JOIN t USING (id)", &["t"]),
    ("SELECT * FROM (TABLE orders)", &["orders"]),
    ("WITH c AS (SELECT 1 AS a) SELECT * FROM (TABLE c)", &[]),
    ("SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 5", &["t"]),
    ("SELECT * EXCLUDE (a) REPLACE (b * 2 AS b) FROM t", &["t"]),
    (
        "SELECT {'a': 1, 'b': [1, 2]} AS s, x::INT AS i, d + INTERVAL 7 DAY AS w FROM t",
        &["t"],
    ),
    ("SELECT 'héllo wörld ✓' AS s, * FROM t", &["t"]),
    ("SELECT '日本語\n改行' AS s FROM\n  \"Tëst\"", &["Tëst"]),
    ("FROM t SELECT a", &["t"]),
    ("FROM t", &["t"]),
    ("SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b", &["t"]),
    ("SELECT a, sum(b) FROM t GROUP BY ALL ORDER BY ALL", &["t"]),
    (
        "SELECT list_transform(l, lambda x: x + 1) AS l2, list_filter(l, x -> x > 1) FROM t",
        &["t"],
    ),
    ("SELECT count(*) FILTER (WHERE x > 1) FROM t", &["t"]),
];

#[test]
fn dependencies() {
    assert!(DEPENDENCIES.len() >= 40);
    for (sql, expected) in DEPENDENCIES {
        assert_eq!(refs_of(sql), *expected, "{sql}");
    }
}

/// `start..end` slices exactly the reference, and line/column point at its start.
#[test]
fn spans_round_trip() {
    for (sql, _) in DEPENDENCIES {
        let q = parse_query(sql).unwrap();
        for r in q.table_refs() {
            let text = &sql[r.start..r.end];
            let unquoted: Vec<String> = text
                .split('.')
                .map(|p| {
                    p.strip_prefix('"')
                        .and_then(|p| p.strip_suffix('"'))
                        .map_or(p.to_string(), |p| p.replace("\"\"", "\""))
                })
                .collect();
            assert_eq!(unquoted, r.parts, "{sql}: {text}");
            let before = &sql[..r.start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
            assert_eq!((r.line, r.column), (line, column), "{sql}: {text}");
        }
    }
}

#[test]
fn table_ref_accessors() {
    let q = parse_query("SELECT * FROM main.\"Stg_Orders\" AS s JOIN Customers c ON true").unwrap();
    let refs = q.table_refs();
    assert_eq!(refs[0].name(), "stg_orders");
    assert_eq!(refs[0].schema().as_deref(), Some("main"));
    assert_eq!(refs[0].display(), "main.Stg_Orders");
    assert_eq!(&q.sql()[refs[0].start..refs[0].end], "main.\"Stg_Orders\"");
    assert_eq!(refs[1].name(), "customers");
    assert_eq!(refs[1].schema(), None);
    assert_eq!(refs[1].display(), "Customers");
}

#[test]
fn rewriting_an_unaliased_reference_keeps_its_name_for_qualified_columns() {
    let q = parse_query("SELECT p.order_id, p.* FROM p JOIN q AS x ON p.id = x.id, TABLE_REF r")
        .unwrap();
    let out = q.rewrite_refs(&|r| Some(format!("_stage.{}__1", r.name())));
    assert_eq!(
        out,
        "SELECT p.order_id, p.* FROM _stage.p__1 AS \"p\" JOIN _stage.q__1 AS x ON p.id = x.id, _stage.table_ref__1 r"
    );
}

#[test]
fn rewrite_refs_touches_only_references() {
    let sql = "/* header */\nWITH stg_orders AS (SELECT * FROM stg_orders WHERE note = 'é stg_orders')\n\
               SELECT o.*, c.name -- stg_orders\nFROM stg_orders o JOIN main.Customers AS c ON o.cid = c.id";
    let q = parse_query(sql).unwrap();
    let out = q.rewrite_refs(&|r| match r.name().as_str() {
        "stg_orders" => Some("__stage.stg_orders__v2".to_string()),
        "customers" => Some("__stage.\"Customers\"".to_string()),
        _ => None,
    });
    assert_eq!(
        out,
        "/* header */\nWITH stg_orders AS (SELECT * FROM __stage.stg_orders__v2 AS \"stg_orders\" WHERE note = 'é stg_orders')\n\
         SELECT o.*, c.name -- stg_orders\nFROM stg_orders o JOIN __stage.\"Customers\" AS c ON o.cid = c.id"
    );
    assert_eq!(q.rewrite_refs(&|_| None), sql);
    // The rewritten query still parses and reads the staged tables.
    assert_eq!(
        refs_of(&out),
        ["__stage.stg_orders__v2", "__stage.Customers"]
    );
}

#[test]
fn canonical_ignores_formatting_comments_and_keyword_case() {
    let variants = [
        "SELECT a, sum(b) AS total FROM t WHERE c > 1 GROUP BY a",
        "select a, sum(b) as total from t where c > 1 group by a",
        "  SELECT\n    a,\n    sum(b)   AS total -- the total\n  FROM t\n  /* filter */ WHERE c > 1\n  GROUP BY a;\n",
        "/* @hubforge\nkind = \"table\"\n*/\nSELECT a,sum(b) AS total FROM t WHERE c>1 GROUP BY a",
    ];
    let canonical: BTreeSet<String> = variants
        .iter()
        .map(|s| parse_query(s).unwrap().canonical())
        .collect();
    assert_eq!(canonical.len(), 1, "{canonical:?}");
    let different = parse_query("SELECT a, sum(b) AS total FROM t WHERE c > 2 GROUP BY a").unwrap();
    assert!(!canonical.contains(&different.canonical()));
}

fn error_of(sql: &str) -> SqlError {
    match parse_query(sql) {
        Ok(_) => panic!("{sql}: parsed"),
        Err(e) => e,
    }
}

#[test]
fn errors() {
    use SqlErrorKind::*;
    // (sql, kind, line, column, text the message contains)
    let cases: &[(&str, SqlErrorKind, usize, usize, &str)] = &[
        ("", Empty, 1, 1, "empty"),
        (
            "  -- only a comment\n /* and another */ ",
            Empty,
            1,
            1,
            "empty",
        ),
        (";", Empty, 1, 1, "empty"),
        (
            "CREATE TABLE x AS SELECT 1",
            NotAQuery,
            1,
            1,
            "CREATE TABLE statement",
        ),
        (
            "-- make it\n  CREATE OR REPLACE TABLE x AS SELECT 1",
            NotAQuery,
            2,
            3,
            "CREATE TABLE statement",
        ),
        (
            "CREATE VIEW v AS SELECT 1",
            NotAQuery,
            1,
            1,
            "CREATE VIEW statement",
        ),
        (
            "INSERT INTO x VALUES (1)",
            NotAQuery,
            1,
            1,
            "INSERT statement",
        ),
        ("UPDATE t SET a = 1", NotAQuery, 1, 1, "UPDATE statement"),
        ("DELETE FROM t", NotAQuery, 1, 1, "DELETE statement"),
        ("DROP TABLE t", NotAQuery, 1, 1, "DROP TABLE statement"),
        (
            "WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c",
            NotAQuery,
            1,
            1,
            "INSERT statement",
        ),
        ("SELECT 1 INTO t", NotAQuery, 1, 1, "SELECT INTO statement"),
        (
            "SELECT 1;\n  SELECT 2",
            MultipleStatements,
            2,
            3,
            "more than one",
        ),
        (
            "SELECT 1; SELECT 2; SELECT 3",
            MultipleStatements,
            1,
            11,
            "more than one",
        ),
        (
            "SELECT *\nFROM t\nWHERE",
            Syntax,
            3,
            6,
            "Expected: an expression",
        ),
        (
            "SELECT a,\n  b\nFROM t WHERE a = = 1",
            Syntax,
            3,
            18,
            "Expected: an expression, found: =",
        ),
        ("SELECT 'abc", Syntax, 1, 8, "Unterminated string literal"),
        ("SELECT 'é' AS x FROM t WHERE )", Syntax, 1, 30, "found: )"),
        ("TABLE orders", Syntax, 1, 1, "found: TABLE"),
        (
            "SELECT * FROM t ASOF JOIN u ON t.ts >= u.ts",
            Syntax,
            1,
            29,
            "",
        ),
    ];
    for (sql, kind, line, column, text) in cases {
        let e = error_of(sql);
        assert_eq!(
            (e.kind, e.line, e.column),
            (*kind, *line, *column),
            "{sql}: {e:?}"
        );
        assert!(e.message.contains(text), "{sql}: {e:?}");
        assert!(!e.message.contains("at Line:"), "{sql}: {e:?}");
    }
    for ok in ["SELECT 1;", "SELECT 1; ;", "  SELECT 1 ; -- done\n"] {
        assert!(parse_query(ok).is_ok(), "{ok}");
    }
}

/// DuckDB syntax that sqlparser 0.64 rejects: callers must fall back to DuckDB's parser.
#[test]
fn duckdb_syntax_sqlparser_rejects() {
    for sql in [
        "PIVOT t ON k USING sum(x)",
        "UNPIVOT t ON a, b INTO NAME k VALUE v",
        "SELECT * LIKE 'a%' FROM t",
        "SELECT * RENAME (a AS b) FROM t",
        "SELECT * FROM t USING SAMPLE 10%",
        "SELECT * FROM t ASOF JOIN u ON t.ts >= u.ts",
        "SELECT [x * 2 FOR x IN l] FROM t",
        "SELECT #1 FROM t",
        "TABLE t",
        "SELECT * FROM a AS x POSITIONAL JOIN b",
    ] {
        assert_eq!(error_of(sql).kind, SqlErrorKind::Syntax, "{sql}");
    }
}

// ---------------------------------------------------------------------------------------
// Lineage

struct Schemas(BTreeMap<String, Option<Vec<String>>>);

impl Schemas {
    fn new(tables: &[(&str, Option<&[&str]>)]) -> Self {
        Schemas(
            tables
                .iter()
                .map(|(n, cols)| {
                    (
                        n.to_string(),
                        cols.map(|c| c.iter().map(|s| s.to_string()).collect()),
                    )
                })
                .collect(),
        )
    }
}

impl SchemaProvider for Schemas {
    fn resolve(&self, table: &TableRef) -> Option<(String, Option<Vec<String>>)> {
        let name = table.name();
        self.0.get(&name).map(|cols| (name, cols.clone()))
    }
}

fn schemas() -> Schemas {
    Schemas::new(&[
        (
            "orders",
            Some(&["id", "customer_id", "amount", "status", "ordered_at"]),
        ),
        ("customers", Some(&["id", "name", "country"])),
        ("refunds", Some(&["id", "order_id", "total"])),
        ("stg", None),
        ("stg_orders", None),
        ("events", None),
    ])
}

fn lineage(sql: &str) -> Lineage {
    parse_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .lineage(&schemas())
}

fn col(r: &str) -> ColumnRef {
    let (table, column) = r.split_once('.').unwrap();
    ColumnRef {
        table: table.to_string(),
        column: column.to_string(),
    }
}

fn set(refs: &[&str]) -> BTreeSet<ColumnRef> {
    refs.iter().map(|r| col(r)).collect()
}

/// (sql, expected output columns with their inputs, expected row inputs, expected clauses)
type LineageCase<'a> = (
    &'a str,
    &'a [(&'a str, &'a [&'a str])],
    &'a [&'a str],
    &'a [&'a str],
);

const LINEAGE: &[LineageCase] = &[
    // a column through a CTE
    (
        "WITH o AS (SELECT id, amount * 2 AS doubled FROM orders) SELECT id, doubled FROM o",
        &[("id", &["orders.id"]), ("doubled", &["orders.amount"])],
        &[],
        &[],
    ),
    // join, qualified and unqualified columns
    (
        "SELECT o.id, name, amount FROM orders o JOIN customers c ON o.customer_id = c.id",
        &[
            ("id", &["orders.id"]),
            ("name", &["customers.name"]),
            ("amount", &["orders.amount"]),
        ],
        &["orders.customer_id", "customers.id"],
        &["JOIN"],
    ),
    // aggregate + GROUP BY
    (
        "SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer_id",
        &[
            ("customer_id", &["orders.customer_id"]),
            ("total", &["orders.amount"]),
            ("n", &[]),
        ],
        &["orders.customer_id"],
        &["GROUP BY"],
    ),
    // GROUP BY position and select alias
    (
        "SELECT date_trunc('month', ordered_at) AS m, sum(amount) AS total FROM orders GROUP BY m HAVING total > 0",
        &[("m", &["orders.ordered_at"]), ("total", &["orders.amount"])],
        &["orders.ordered_at", "orders.amount"],
        &["GROUP BY", "HAVING"],
    ),
    // count(*) only: no columns, but still rows
    (
        "SELECT count(*) FROM orders",
        &[("count_star()", &[])],
        &[],
        &["AGGREGATE"],
    ),
    // window: PARTITION BY / ORDER BY columns are inputs
    (
        "SELECT id, sum(amount) OVER (PARTITION BY customer_id ORDER BY ordered_at) AS running FROM orders",
        &[
            ("id", &["orders.id"]),
            (
                "running",
                &["orders.amount", "orders.customer_id", "orders.ordered_at"],
            ),
        ],
        &[],
        &[],
    ),
    (
        "SELECT id, rank() OVER w AS r FROM orders WINDOW w AS (PARTITION BY status ORDER BY amount)",
        &[
            ("id", &["orders.id"]),
            ("r", &["orders.status", "orders.amount"]),
        ],
        &[],
        &[],
    ),
    // QUALIFY
    (
        "SELECT id FROM orders QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY ordered_at DESC) = 1",
        &[("id", &["orders.id"])],
        &["orders.customer_id", "orders.ordered_at"],
        &["QUALIFY"],
    ),
    // UNION: column i reads column i of every branch
    (
        "SELECT id, amount FROM orders UNION ALL SELECT order_id, total FROM refunds",
        &[
            ("id", &["orders.id", "refunds.order_id"]),
            ("amount", &["orders.amount", "refunds.total"]),
        ],
        &[],
        &["UNION"],
    ),
    // UNION without ALL compares every column
    (
        "SELECT id FROM orders UNION SELECT order_id FROM refunds",
        &[("id", &["orders.id", "refunds.order_id"])],
        &["orders.id", "refunds.order_id"],
        &["UNION"],
    ),
    (
        "SELECT id, name FROM customers UNION ALL BY NAME SELECT id, total FROM refunds",
        &[
            ("id", &["customers.id", "refunds.id"]),
            ("name", &["customers.name"]),
            ("total", &["refunds.total"]),
        ],
        &[],
        &["UNION"],
    ),
    // star expansion through known schemas
    (
        "SELECT * FROM customers",
        &[
            ("id", &["customers.id"]),
            ("name", &["customers.name"]),
            ("country", &["customers.country"]),
        ],
        &[],
        &[],
    ),
    (
        "SELECT * EXCLUDE (country) REPLACE (upper(name) AS name) FROM customers",
        &[("id", &["customers.id"]), ("name", &["customers.name"])],
        &[],
        &[],
    ),
    (
        "WITH c AS (SELECT id, name FROM customers) SELECT c.*, o.amount FROM c JOIN orders o ON o.customer_id = c.id",
        &[
            ("id", &["customers.id"]),
            ("name", &["customers.name"]),
            ("amount", &["orders.amount"]),
        ],
        &["orders.customer_id", "customers.id"],
        &["JOIN"],
    ),
    // USING merges the column; duplicates get DuckDB's _1 suffix
    (
        "SELECT * FROM customers JOIN refunds USING (id)",
        &[
            ("id", &["customers.id"]),
            ("name", &["customers.name"]),
            ("country", &["customers.country"]),
            ("order_id", &["refunds.order_id"]),
            ("total", &["refunds.total"]),
        ],
        &["customers.id", "refunds.id"],
        &["JOIN"],
    ),
    (
        "SELECT c.id, r.id FROM customers c JOIN refunds r ON c.id = r.id",
        &[("id", &["customers.id"]), ("id_1", &["refunds.id"])],
        &["customers.id", "refunds.id"],
        &["JOIN"],
    ),
    // unknown upstream schema: fine while every name is unambiguous
    (
        "SELECT id, amount * 2 AS doubled FROM stg WHERE status = 'paid'",
        &[("id", &["stg.id"]), ("doubled", &["stg.amount"])],
        &["stg.status"],
        &["WHERE"],
    ),
    (
        "SELECT s.id, c.name FROM stg s JOIN customers c ON s.customer_id = c.id",
        &[("id", &["stg.id"]), ("name", &["customers.name"])],
        &["stg.customer_id", "customers.id"],
        &["JOIN"],
    ),
    // an unqualified name not in the known source belongs to the unknown one
    (
        "SELECT name, extra FROM customers c JOIN stg s ON s.customer_id = c.id",
        &[("name", &["customers.name"]), ("extra", &["stg.extra"])],
        &["stg.customer_id", "customers.id"],
        &["JOIN"],
    ),
    // select-list aliases in WHERE and later items (DuckDB)
    (
        "SELECT amount * 2 AS dbl, dbl + 1 AS plus FROM orders WHERE dbl > 10",
        &[("dbl", &["orders.amount"]), ("plus", &["orders.amount"])],
        &["orders.amount"],
        &["WHERE"],
    ),
    // a source column wins over an alias of the same name in WHERE
    (
        "SELECT id * 100 AS amount FROM orders WHERE amount = 10",
        &[("amount", &["orders.id"])],
        &["orders.amount"],
        &["WHERE"],
    ),
    // scalar, IN and EXISTS subqueries
    (
        "SELECT id, (SELECT max(total) FROM refunds r WHERE r.order_id = o.id) AS max_refund FROM orders o",
        &[
            ("id", &["orders.id"]),
            (
                "max_refund",
                &["refunds.total", "refunds.order_id", "orders.id"],
            ),
        ],
        &[],
        &[],
    ),
    (
        "SELECT id FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE country = 'FR')",
        &[("id", &["orders.id"])],
        &["orders.customer_id", "customers.id", "customers.country"],
        &["WHERE"],
    ),
    (
        "SELECT id FROM orders o WHERE NOT EXISTS (SELECT * FROM events e WHERE e.order_id = o.id)",
        &[("id", &["orders.id"])],
        &["events.order_id", "orders.id"],
        &["WHERE"],
    ),
    // row logic inside a CTE reaches the output's rows
    (
        "WITH paid AS (SELECT * FROM orders WHERE status = 'paid') SELECT id, amount FROM paid ORDER BY amount DESC LIMIT 10",
        &[("id", &["orders.id"]), ("amount", &["orders.amount"])],
        &["orders.status", "orders.amount"],
        &["WHERE", "ORDER BY", "LIMIT"],
    ),
    // ORDER BY without LIMIT does not change rows
    (
        "SELECT id FROM orders ORDER BY amount",
        &[("id", &["orders.id"])],
        &[],
        &[],
    ),
    // DISTINCT: every column decides the rows
    (
        "SELECT DISTINCT customer_id, status FROM orders",
        &[
            ("customer_id", &["orders.customer_id"]),
            ("status", &["orders.status"]),
        ],
        &["orders.customer_id", "orders.status"],
        &["DISTINCT"],
    ),
    (
        "SELECT DISTINCT ON (customer_id) customer_id, amount FROM orders ORDER BY customer_id, ordered_at DESC",
        &[
            ("customer_id", &["orders.customer_id"]),
            ("amount", &["orders.amount"]),
        ],
        &["orders.customer_id", "orders.ordered_at"],
        &["DISTINCT", "ORDER BY"],
    ),
    (
        "SELECT customer_id, status, sum(amount) AS total FROM orders GROUP BY ALL",
        &[
            ("customer_id", &["orders.customer_id"]),
            ("status", &["orders.status"]),
            ("total", &["orders.amount"]),
        ],
        &["orders.customer_id", "orders.status"],
        &["GROUP BY"],
    ),
    // unnest in a select list multiplies rows
    (
        "SELECT id, unnest(tags) AS tag FROM stg",
        &[("id", &["stg.id"]), ("tag", &["stg.tags"])],
        &["stg.tags"],
        &["UNNEST"],
    ),
    // table functions: not dependencies, their columns read nothing upstream
    (
        "SELECT i, i * 2 AS twice FROM range(10) r(i)",
        &[("i", &[]), ("twice", &[])],
        &[],
        &[],
    ),
    (
        "SELECT a FROM read_parquet('x/*.parquet')",
        &[("a", &[])],
        &[],
        &[],
    ),
    (
        "SELECT s.id, t.tag FROM stg s, unnest(s.tags) AS t(tag)",
        &[("id", &["stg.id"]), ("tag", &["stg.tags"])],
        &["stg.tags"],
        &["JOIN", "UNNEST"],
    ),
    // VALUES
    (
        "SELECT v.code, c.name FROM (VALUES ('FR', 1), ('DE', 2)) v(code, n) JOIN customers c ON c.country = v.code",
        &[("code", &[]), ("name", &["customers.name"])],
        &["customers.country"],
        &["JOIN"],
    ),
    // struct fields, lambdas, casts, intervals
    (
        "SELECT s.payload.kind AS kind, list_transform(s.items, lambda x: x * 2) AS items, s.ts::DATE + INTERVAL 7 DAY AS due FROM stg s",
        &[
            ("kind", &["stg.payload"]),
            ("items", &["stg.items"]),
            ("due", &["stg.ts"]),
        ],
        &[],
        &[],
    ),
    (
        "SELECT payload.kind, list_filter(items, x -> x > 0) AS pos FROM stg",
        &[("kind", &["stg.payload"]), ("pos", &["stg.items"])],
        &[],
        &[],
    ),
    // derived tables see earlier FROM items (implicit LATERAL)
    (
        "SELECT o.id, d.doubled FROM orders o, (SELECT o.amount * 2 AS doubled) d",
        &[("id", &["orders.id"]), ("doubled", &["orders.amount"])],
        &[],
        &["JOIN"],
    ),
    // a CTE shadowing a table name reads the table inside its own body
    (
        "WITH orders AS (SELECT id, amount FROM orders WHERE amount > 0) SELECT * FROM orders",
        &[("id", &["orders.id"]), ("amount", &["orders.amount"])],
        &["orders.amount"],
        &["WHERE"],
    ),
    // `SELECT *` over an unknown schema in a CTE still passes names through
    (
        "WITH src AS (SELECT * FROM stg_orders) SELECT id, amount FROM src",
        &[
            ("id", &["stg_orders.id"]),
            ("amount", &["stg_orders.amount"]),
        ],
        &[],
        &[],
    ),
    (
        "WITH src AS (SELECT *, amount * 2 AS dbl FROM stg_orders WHERE ok) SELECT id, dbl FROM src",
        &[("id", &["stg_orders.id"]), ("dbl", &["stg_orders.amount"])],
        &["stg_orders.ok"],
        &["WHERE"],
    ),
    (
        "WITH src AS (SELECT c.*, s.* FROM customers c JOIN stg s ON s.cid = c.id) SELECT name, extra FROM src",
        &[("name", &["customers.name"]), ("extra", &["stg.extra"])],
        &["stg.cid", "customers.id"],
        &["JOIN"],
    ),
    (
        "WITH a AS (SELECT * FROM stg), b AS (SELECT * FROM a) SELECT x FROM b",
        &[("x", &["stg.x"])],
        &[],
        &[],
    ),
    // nested CTEs: an inner CTE shadows an outer one of the same name
    (
        "WITH x AS (SELECT id FROM customers) SELECT (WITH x AS (SELECT max(id) AS id FROM x) SELECT id FROM x) AS top",
        &[("top", &["customers.id"])],
        &[],
        &[],
    ),
    (
        "WITH RECURSIVE a AS (SELECT id FROM orders), b AS (SELECT id FROM a WHERE id > 1) SELECT id FROM b",
        &[("id", &["orders.id"])],
        &["orders.id"],
        &["WHERE"],
    ),
    // set operation with ORDER BY ... LIMIT over its output names
    (
        "SELECT id, amount FROM orders UNION ALL SELECT order_id, total FROM refunds ORDER BY amount DESC LIMIT 3",
        &[
            ("id", &["orders.id", "refunds.order_id"]),
            ("amount", &["orders.amount", "refunds.total"]),
        ],
        &["orders.amount", "refunds.total"],
        &["UNION", "ORDER BY", "LIMIT"],
    ),
    (
        "SELECT * FROM (VALUES (1, 'a')) ORDER BY 2 LIMIT 1 OFFSET 1",
        &[("col0", &[]), ("col1", &[])],
        &[],
        &["ORDER BY", "LIMIT", "OFFSET"],
    ),
    // QUALIFY on a select-list alias; keywords that look like identifiers
    (
        "SELECT id, row_number() OVER (PARTITION BY customer_id ORDER BY ordered_at) AS rn, current_user AS who FROM orders QUALIFY rn = 1",
        &[
            ("id", &["orders.id"]),
            ("rn", &["orders.customer_id", "orders.ordered_at"]),
            ("who", &[]),
        ],
        &["orders.customer_id", "orders.ordered_at"],
        &["QUALIFY"],
    ),
    // FROM-first
    (
        "FROM customers SELECT name",
        &[("name", &["customers.name"])],
        &[],
        &[],
    ),
    // TABLE inside a subquery
    (
        "SELECT name FROM (TABLE customers)",
        &[("name", &["customers.name"])],
        &[],
        &[],
    ),
];

#[test]
fn lineage_cases() {
    for (sql, columns, row_inputs, clauses) in LINEAGE {
        let l = lineage(sql);
        assert_eq!(l.unknown, None, "{sql}");
        let got: Vec<(String, BTreeSet<ColumnRef>)> = l
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.inputs.clone()))
            .collect();
        let want: Vec<(String, BTreeSet<ColumnRef>)> = columns
            .iter()
            .map(|(n, refs)| (n.to_string(), set(refs)))
            .collect();
        assert_eq!(got, want, "{sql}");
        assert_eq!(l.row_inputs, set(row_inputs), "{sql}");
        let clauses: BTreeSet<String> = clauses.iter().map(|c| c.to_string()).collect();
        assert_eq!(l.row_clauses, clauses, "{sql}");
        assert_eq!(l.row_hash.len(), 64, "{sql}");
        assert!(l.columns.iter().all(|c| c.hash.len() == 64), "{sql}");
    }
}

/// (sql, words the reason must contain)
const UNKNOWN: &[(&str, &str)] = &[
    (
        "SELECT * FROM stg_orders",
        "SELECT * over stg_orders, whose columns are not known yet",
    ),
    ("SELECT o.* FROM stg_orders o", "SELECT o.* over stg_orders"),
    (
        "WITH c AS (SELECT * FROM stg_orders) SELECT * FROM c",
        "stg_orders",
    ),
    (
        "WITH c AS (SELECT * EXCLUDE (x) FROM stg_orders) SELECT id FROM c",
        "SELECT * over stg_orders",
    ),
    (
        "WITH c AS (SELECT * FROM stg JOIN events USING (k)) SELECT id FROM c",
        "SELECT * over stg",
    ),
    (
        "WITH c AS (SELECT * FROM stg, events) SELECT id FROM c",
        "column `id` may come from any of stg, events",
    ),
    (
        "SELECT id FROM stg s JOIN stg_orders o ON s.k = o.k",
        "column `id` may come from any of stg, stg_orders",
    ),
    (
        "SELECT id FROM orders o JOIN customers c ON o.customer_id = c.id",
        "column `id` is ambiguous",
    ),
    ("SELECT nope FROM orders", "column `nope` not found"),
    (
        "SELECT * FROM orders PIVOT (sum(amount) FOR status IN ('a', 'b'))",
        "PIVOT",
    ),
    (
        "SELECT * FROM orders UNPIVOT (v FOR k IN (id, amount))",
        "UNPIVOT",
    ),
    ("SELECT COLUMNS('a.*') FROM orders", "COLUMNS"),
    (
        "SELECT * FROM unknown_table",
        "unknown_table is not a known model, seed or source",
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
        "recursive CTE `r`",
    ),
    (
        "SELECT amount * 2 AS amount2 FROM stg WHERE amount2 > 1",
        "`amount2` is a select-list alias",
    ),
    (
        "SELECT * FROM read_csv('x.csv')",
        "SELECT * over read_csv(...)",
    ),
    ("SELECT a.* FROM stg s, stg_orders o", "no table `a`"),
];

#[test]
fn lineage_unknown_with_reason() {
    for (sql, reason) in UNKNOWN {
        let l = lineage(sql);
        let got = l.unknown.clone().unwrap_or_else(|| panic!("{sql}: {l:?}"));
        assert!(got.contains(reason), "{sql}: {got}");
        assert!(l.columns.is_empty(), "{sql}");
        assert_eq!(l.row_hash.len(), 64);
    }
}

fn hashes(sql: &str) -> (BTreeMap<String, String>, String) {
    let l = lineage(sql);
    assert_eq!(l.unknown, None, "{sql}");
    let cols = l.columns.into_iter().map(|c| (c.name, c.hash)).collect();
    (cols, l.row_hash)
}

/// The names of the columns whose hash differs, and whether row_hash differs.
fn changed(before: &str, after: &str) -> (Vec<String>, bool) {
    let (b, brow) = hashes(before);
    let (a, arow) = hashes(after);
    let names: Vec<String> = a
        .iter()
        .filter(|(n, h)| b.get(*n) != Some(*h))
        .map(|(n, _)| n.clone())
        .collect();
    (names, brow != arow)
}

const MODEL: &str = "WITH o AS (SELECT id, customer_id, amount * 2 AS doubled, status FROM orders WHERE status <> 'void')
SELECT o.id, c.name, o.doubled, upper(o.status) AS status, count(*) OVER (PARTITION BY c.id) AS n
FROM o JOIN customers c ON o.customer_id = c.id";

#[test]
fn changed_expression_changes_only_its_columns() {
    let reformatted = "with O as ( select ID, customer_id, amount*2 as DOUBLED, status -- note\n from ORDERS where STATUS <> 'void' )\n\
        select o.id, C.name, O.doubled, upper(o.status) as status, count(*) over (partition by c.id) as n\n\
        from o join customers c on o.customer_id = c.id";
    assert_eq!(changed(MODEL, reformatted), (vec![], false));

    let times3 = MODEL.replace("amount * 2", "amount * 3");
    assert_eq!(
        changed(MODEL, &times3),
        (vec!["doubled".to_string()], false)
    );

    let lower = MODEL.replace("upper(o.status)", "lower(o.status)");
    assert_eq!(changed(MODEL, &lower), (vec!["status".to_string()], false));

    let window = MODEL.replace("PARTITION BY c.id", "PARTITION BY c.country");
    assert_eq!(changed(MODEL, &window), (vec!["n".to_string()], false));

    // Reading a different upstream column changes the column.
    let other = MODEL.replace("c.name", "c.country AS name");
    assert_eq!(changed(MODEL, &other), (vec!["name".to_string()], false));

    // An added column leaves the others alone.
    let added = MODEL.replace("AS n\n", "AS n, o.customer_id\n");
    assert_eq!(
        changed(MODEL, &added),
        (vec!["customer_id".to_string()], false)
    );
}

#[test]
fn changed_rows_change_only_row_hash() {
    for (from, to) in [
        ("status <> 'void'", "status <> 'cancelled'"),
        (
            "o.customer_id = c.id",
            "o.customer_id = c.id AND c.country = 'FR'",
        ),
        ("FROM o JOIN", "FROM o LEFT JOIN"),
    ] {
        let after = MODEL.replace(from, to);
        assert_eq!(changed(MODEL, &after), (vec![], true), "{to}");
    }
    let limited = format!("{MODEL} LIMIT 5");
    assert_eq!(changed(MODEL, &limited), (vec![], true));
    let ordered = format!("{MODEL} ORDER BY 1");
    assert_eq!(changed(MODEL, &ordered), (vec![], false));
}

#[test]
fn changed_cte_column_used_in_where_changes_rows() {
    let before =
        "WITH c AS (SELECT id, amount * 2 AS big FROM orders) SELECT id FROM c WHERE big > 10";
    let after = before.replace("amount * 2", "amount * 3");
    assert_eq!(changed(before, &after), (vec![], true));
}

#[test]
fn distinct_makes_projection_row_affecting() {
    let before = "SELECT DISTINCT customer_id, status FROM orders";
    let after = "SELECT DISTINCT customer_id, lower(status) AS status FROM orders";
    assert_eq!(changed(before, after), (vec!["status".to_string()], true));
    let before = "SELECT customer_id, status, sum(amount) AS t FROM orders GROUP BY ALL";
    let after =
        "SELECT customer_id, lower(status) AS status, sum(amount) AS t FROM orders GROUP BY ALL";
    assert_eq!(changed(before, after), (vec!["status".to_string()], true));
    // A changed aggregate does not change the groups.
    let after = "SELECT customer_id, status, max(amount) AS t FROM orders GROUP BY ALL";
    assert_eq!(changed(before, after), (vec!["t".to_string()], false));
}

#[test]
fn changed_upstream_name_changes_column_and_rows() {
    let (cols, rows) = changed(
        "SELECT name FROM customers",
        "SELECT name FROM main.customers",
    );
    // Same dependency, same column: nothing changed.
    assert_eq!((cols, rows), (vec![], false));
    let (cols, rows) = changed("SELECT id FROM customers", "SELECT id FROM refunds");
    assert_eq!((cols, rows), (vec!["id".to_string()], true));
}

#[test]
fn count_star_keeps_the_dependency() {
    let q = parse_query("SELECT count(*) AS n FROM orders").unwrap();
    assert_eq!(q.table_refs().len(), 1);
    let l = q.lineage(&schemas());
    assert_eq!(l.columns.len(), 1);
    assert!(l.columns[0].inputs.is_empty());
    assert!(l.row_inputs.is_empty());
}

#[test]
fn lineage_reports_the_dependency_name_from_the_provider() {
    struct Models;
    impl SchemaProvider for Models {
        fn resolve(&self, t: &TableRef) -> Option<(String, Option<Vec<String>>)> {
            (t.name() == "stg_orders").then(|| {
                (
                    "models/stg_orders".to_string(),
                    Some(vec!["id".to_string()]),
                )
            })
        }
    }
    let l = parse_query("SELECT ID FROM main.\"STG_ORDERS\"")
        .unwrap()
        .lineage(&Models);
    assert_eq!(l.columns[0].inputs, set(&["models/stg_orders.id"]));
}

#[test]
fn alias_is_not_part_of_the_hash() {
    let (a, _) = hashes("SELECT amount AS a FROM orders");
    let (b, _) = hashes("SELECT amount AS b FROM orders");
    assert_eq!(a["a"], b["b"]);
    // Renaming a CTE column consistently changes nothing either.
    let (a, _) = hashes("WITH c AS (SELECT amount AS x FROM orders) SELECT x AS v FROM c");
    let (b, _) = hashes("WITH c AS (SELECT amount AS y FROM orders) SELECT y AS v FROM c");
    assert_eq!(a, b);
}

/// Every prefix of every test query either fails to parse or is analysed without panic.
#[test]
fn no_panic_on_any_prefix() {
    let all = DEPENDENCIES
        .iter()
        .map(|(s, _)| *s)
        .chain(LINEAGE.iter().map(|(s, ..)| *s))
        .chain(UNKNOWN.iter().map(|(s, _)| *s))
        .chain([MODEL]);
    let schemas = schemas();
    for sql in all {
        for (i, _) in sql.char_indices() {
            if let Ok(q) = parse_query(&sql[..i]) {
                let _ = q.lineage(&schemas);
                let _ = q.rewrite_refs(&|r| Some(r.name()));
                let _ = q.canonical();
            }
        }
    }
}

#[test]
fn realistic_model() {
    let sql = "/* @hubforge
kind        = \"incremental\"
time_column = \"order_date\"
*/
WITH daily AS (
    SELECT order_date::DATE AS order_date, customer_id, sum(amount) AS revenue, count(*) AS n_orders
    FROM stg_orders
    WHERE ordered_at >= DATE '2024-01-01' AND ordered_at < DATE '2024-02-01'
    GROUP BY ALL
)
SELECT d.*, c.country, revenue / nullif(n_orders, 0) AS avg_order
FROM daily AS d
LEFT JOIN customers AS c ON c.id = d.customer_id
";
    let q = parse_query(sql).unwrap();
    assert_eq!(refs_of(sql), ["stg_orders", "customers"]);
    let l = q.lineage(&schemas());
    assert_eq!(l.unknown, None);
    let got: Vec<(&str, BTreeSet<ColumnRef>)> = l
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.inputs.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("order_date", set(&["stg_orders.order_date"])),
            ("customer_id", set(&["stg_orders.customer_id"])),
            ("revenue", set(&["stg_orders.amount"])),
            ("n_orders", set(&[])),
            ("country", set(&["customers.country"])),
            ("avg_order", set(&["stg_orders.amount"])),
        ]
    );
    assert_eq!(
        l.row_inputs,
        set(&[
            "stg_orders.ordered_at",
            "stg_orders.order_date",
            "stg_orders.customer_id",
            "customers.id"
        ])
    );
    let clauses: Vec<&str> = l.row_clauses.iter().map(String::as_str).collect();
    assert_eq!(clauses, ["GROUP BY", "JOIN", "WHERE"]);
}

/// Unaliased select items are named as DuckDB 2.0 names them (lowercased).
#[test]
fn unaliased_column_names_follow_duckdb() {
    let cases = [
        ("amount", "amount"),
        ("o.amount", "amount"),
        ("amount*2", "(amount * 2)"),
        ("amount + id - 1", "((amount + id) - 1)"),
        ("o.amount * 2", "(o.amount * 2)"),
        ("sum(o.amount)", "sum(o.amount)"),
        ("count(*)", "count_star()"),
        ("count(DISTINCT id)", "count(distinct id)"),
        ("id::INT", "cast(id as integer)"),
        (
            "CAST(amount AS DECIMAL(10,2))",
            "cast(amount as decimal(10, 2))",
        ),
        ("TRY_CAST(status AS INT)", "try_cast(status as integer)"),
        ("amount <> 1", "(amount != 1)"),
        ("-amount", "(-(amount))"),
        ("-1", "-1"),
        ("NOT (amount > 1)", "(not (amount > 1))"),
        ("amount IS NOT NULL", "(amount is not null)"),
        ("coalesce(amount, 0)", "coalesce(amount, 0)"),
        ("nullif(amount, 0)", "\"nullif\"(amount, 0)"),
        ("round(amount, 2)", "round(amount, 2)"),
        ("'a'", "'a'"),
        ("lower(CAST(id AS VARCHAR))", "lower(cast(id as varchar))"),
    ];
    for (expr, name) in cases {
        let sql = format!("SELECT {expr} FROM orders o");
        let l = lineage(&sql);
        assert_eq!(l.columns[0].name, name, "{sql}");
    }
}
