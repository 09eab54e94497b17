#!/usr/bin/env python3
"""Differential test of DuckDB-to-Spark SQL translators, for hubforge's Spark engine.

hubforge runs models written in DuckDB's SQL on Apache Spark by translating each
query to Spark SQL (`hubforge::sql::spark::to_spark`, built on the sqlparser
crate). This tool checks that translation, and the SQL transpilers a hubforge
user could use instead, by what matters to them: does the translated query give
DuckDB's result on Spark?

For every case (a one-line, self-contained DuckDB query over literals or VALUES,
see CASES: the queries of hubforge's own Spark test plus the constructs the
example project's models and hubforge users' models rely on) it

  1. runs the query on DuckDB: the expected result;
  2. asks each translator for Spark SQL;
  3. runs that SQL on a Spark Connect server and compares the result with DuckDB's.

Each translator gets one outcome per case:

  same              the Spark SQL runs and gives DuckDB's result
  refused           the translator says it cannot translate the query (for hubforge
                    this is the intended answer for a construct without an exact
                    Spark equivalent)
  fails on Spark    the Spark SQL is rejected or fails on Spark
  different result  the Spark SQL runs but gives another result: silently wrong data

Translators compared
  hubforge      the `to-spark` command of the `hubforge-bench` binary (one DuckDB
                query per line on stdin, one JSON object per line on stdout:
                {"duckdb", "spark"} or {"duckdb", "error"}); its path is read from
                HUBFORGE_BENCH (default ~/.cache/hubforge-target/debug/hubforge-bench)
  polyglot-sql  Rust transpiler, through its Python bindings (same Rust engine as the
                crate): transpile(sql, read="duckdb", write="spark",
                unsupported_level="raise")
  sqlglot       Python transpiler (reference point; not Rust): transpile(sql,
                read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)
  sqlparser-rs  baseline without rewriting: sqlparser-rs (the parser hubforge builds
                on) through sqloxide, parsed with its DuckDB dialect and printed
                back unchanged; shows what the rewrites add

  Both transpilers run in their strictest mode: an unsupported construct is
  reported as an error (counted as `refused`) instead of a warning.

  Left out: squonk (Rust parser with transpile(), but no Spark dialect, and its
  databricks and hive dialects print DuckDB's constructs back unchanged, like the
  sqlparser-rs baseline), polyglot-sql-chio (a fork of polyglot-sql), sqlglotrs
  and sqlglotc (a Rust tokenizer and a compiled build of sqlglot: sqlglot's output).

Comparison (the same for every translator)
  - same number of rows and columns, rows in the order returned (every case is
    deterministic: ORDER BY wherever the row order could vary);
  - a column whose DuckDB name is a plain identifier (an alias or a column, which
    downstream models refer to) must have that name on Spark too, compared
    case-insensitively; names of unaliased expressions are not compared;
  - values: two numbers (integer, decimal or float, on either side) compare
    numerically: exactly unless one is a float, then within a relative 1e-12,
    |a - b| <= 1e-12 * max(|a|, 1) (tests/spark.rs allows 1e-9, which at epoch
    seconds, about 1.7e9, would let 1704067201 pass for 1704067201.5); anything
    else compares by its text: NULL, true/false, dates as YYYY-MM-DD, timestamps
    as YYYY-MM-DD HH:MM:SS[.ffffff] in UTC (so a DATE and a TIMESTAMP at midnight
    differ, as they do in a published table), lists and structs element by
    element with the same rules.
  Both sides run in UTC: DuckDB with SET TimeZone = 'UTC', Spark with
  spark.sql.session.timeZone = UTC (as hubforge's Spark engine does), and this
  process with TZ=UTC.

Setup (once)
  python3 -m venv /root/.cache/translators-venv
  /root/.cache/translators-venv/bin/pip install \\
      duckdb==2.0.0 polyglot-sql==0.13.4 sqlglot==30.31.0 sqloxide==0.61.1 \\
      'pyspark[connect]==4.1.4' pytz==2026.6
  duckdb 2.0.0 is the DuckDB that hubforge bundles (libduckdb-sys 1.20000.1);
  pyspark[connect] is the Spark Connect client, matching the server's Spark 4.1.4;
  pytz lets DuckDB's Python client return TIMESTAMP WITH TIME ZONE values.

  A Spark Connect server: scripts/spark-connect.sh start (sc://localhost:15002;
  SPARK_CONNECT_URL, or SPARK_CONNECT_PORT as for that script, selects another).

  The hubforge binary: cargo build --features spark --bin hubforge-bench (target
  directory as configured), then HUBFORGE_BENCH=/path/to/hubforge-bench.

Run
  /root/.cache/translators-venv/bin/python bench/translators.py
      [--translators hubforge,polyglot-sql,sqlglot,sqlparser-rs]
      [--wait-for-hubforge MINUTES] [--out /tmp/translators.md] [--json FILE]
  The markdown report (a table with one row per case and one column per
  translator, a summary per translator, then every translation) is written to
  --out and printed. Exits 0 when the report was written, whatever the outcomes.
"""

import argparse
import datetime
import decimal
import importlib.metadata
import json
import logging
import os
import re
import subprocess
import sys
import time

os.environ["TZ"] = "UTC"
time.tzset()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BENCH = os.path.expanduser("~/.cache/hubforge-target/debug/hubforge-bench")

# (group, DuckDB query). Every query is one line, self-contained and deterministic.
CASES = [
    # The queries of tests/spark.rs, translated_constructs_give_duckdbs_results_on_spark.
    ("test", "SELECT CAST(CAST(date_trunc('month', DATE '2024-02-15') AS DATE) AS VARCHAR) AS m"),
    ("test", "SELECT CAST(CAST(DATE '2024-02-28' + INTERVAL 1 DAY AS DATE) AS VARCHAR) AS next_day"),
    ("test", "SELECT strftime(TIMESTAMP '2024-03-05 07:08:09', '%Y-%m-%d %H:%M:%S') AS t"),
    ("test", "SELECT [10, 20, 30][2] AS second, list_value(1, 2)[1] AS first"),
    ("test", "SELECT {'a': 1, 'b': 'x'}.b AS field"),
    ("test", r"SELECT 'it''s' || ' ' || 'a\b' AS quoted"),
    ("test", "SELECT 7 // 2 AS quotient, 7 % 2 AS remainder, 7 / 2 AS ratio"),
    ("test", "SELECT date_diff('day', DATE '2024-01-01', DATE '2024-03-01') AS days"),
    ("test", "SELECT epoch(TIMESTAMP '2024-01-01 00:00:01') AS seconds"),
    ("test", "SELECT x, count(*) FILTER (WHERE y > 1) AS big FROM (VALUES (1, 2), (1, 0), (2, 5)) t(x, y) GROUP BY x ORDER BY x"),
    ("test", "SELECT * EXCLUDE (b) FROM (SELECT 1 AS a, 2 AS b, 3 AS c)"),
    ("test", "SELECT count(*) AS days FROM range(TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-08 00:00:00', INTERVAL 1 DAY) t(d)"),
    ("test", "SELECT count(*) AS n, min(d), max(d) FROM range(1, 10, 4) t(d)"),
    ("test", "SELECT count(*) AS none FROM range(5, 1) t(d)"),
    ("test", "SELECT CAST('12.5' AS DOUBLE) * 2 AS dbl, CAST(3 AS HUGEINT) + 1 AS huge, 5::VARCHAR || 'x' AS txt"),
    ("test", "SELECT lower('ABC') AS l, upper('x') AS u, substr('C000123', 2) AS s, length('héllo') AS n"),
    ("test", "SELECT coalesce(NULL, 3) AS c, greatest(1, 5, 3) AS g, least(4, 2) AS l"),
    ("test", "SELECT d, lead(d) OVER (ORDER BY d) AS next FROM (VALUES (1), (2), (3)) t(d) ORDER BY d"),
    ("test", "SELECT regexp_matches('abc', 'b.') AS found, 'ABC' ILIKE 'a%' AS like_it"),
    ("test", "FROM (SELECT 1 AS a) SELECT a + 1 AS b"),
    ("test", "SELECT unnest(['2024-01-01', '2024-01-02']) AS unit ORDER BY unit"),
    # Date arithmetic ({{ start }} renders as DATE 'YYYY-MM-DD').
    ("date", "SELECT DATE '2024-02-28' + INTERVAL 1 DAY AS d"),
    ("date", "SELECT DATE '2024-01-31' + INTERVAL 1 MONTH AS d"),
    ("date", "SELECT CAST(DATE '2024-01-31' + INTERVAL 1 MONTH AS DATE) AS d"),
    ("date", "SELECT TIMESTAMP '2024-03-01 10:00:00' - INTERVAL 6 DAY AS t"),
    ("date", "SELECT DATE '2024-01-07' - INTERVAL 6 DAY AS d"),
    ("date", "SELECT DATE '2024-03-01' - 30 AS d, DATE '2024-03-01' + 1 AS next"),
    ("date", "SELECT DATE '2024-03-01' - DATE '2024-01-01' AS days"),
    ("date", "SELECT date_add(DATE '2024-01-31', INTERVAL 1 MONTH) AS d"),
    ("date", "SELECT x FROM (VALUES (DATE '2024-01-01'), (DATE '2024-01-03'), (DATE '2024-01-09')) t(x) WHERE x > DATE '2024-01-09' - INTERVAL 7 DAY AND x <= DATE '2024-01-09' ORDER BY x"),
    ("date", "SELECT CAST(d AS DATE) AS day FROM range(DATE '2024-01-07', DATE '2024-01-10', INTERVAL 1 DAY) AS t(d) ORDER BY day"),
    ("date", "SELECT date_diff('month', DATE '2024-01-31', DATE '2024-03-01') AS months"),
    ("date", "SELECT date_diff('year', DATE '2023-12-31', DATE '2024-01-01') AS years"),
    ("date", "SELECT date_diff('week', DATE '2024-01-06', DATE '2024-01-08') AS weeks"),
    ("date", "SELECT date_diff('hour', TIMESTAMP '2024-01-01 10:59:00', TIMESTAMP '2024-01-01 11:01:00') AS hours"),
    ("date", "SELECT datediff('day', TIMESTAMP '2024-01-01 23:00:00', TIMESTAMP '2024-01-02 01:00:00') AS days"),
    ("date", "SELECT date_part('year', DATE '2024-03-05') AS y, extract(month FROM DATE '2024-03-05') AS m, dayofweek(DATE '2024-03-10') AS dow"),
    ("date", "SELECT make_date(2024, 2, 29) AS d"),
    # date_trunc
    ("date_trunc", "SELECT date_trunc('day', TIMESTAMP '2024-03-05 07:08:09') AS t"),
    ("date_trunc", "SELECT date_trunc('week', DATE '2024-03-07') AS w"),
    ("date_trunc", "SELECT date_trunc('month', DATE '2024-02-15') AS m"),
    ("date_trunc", "SELECT date_trunc('year', TIMESTAMP '2024-07-15 12:00:00') AS y"),
    ("date_trunc", "SELECT CAST(date_trunc('month', d) AS DATE) AS month, count(*) AS n FROM (VALUES (DATE '2024-01-05'), (DATE '2024-01-20'), (DATE '2024-02-01')) t(d) GROUP BY date_trunc('month', d) ORDER BY month"),
    # QUALIFY and star modifiers
    ("select", "SELECT g, v FROM (VALUES (1, 10), (1, 20), (2, 5)) t(g, v) QUALIFY row_number() OVER (PARTITION BY g ORDER BY v DESC) = 1 ORDER BY g"),
    ("select", "SELECT * REPLACE (a * 10 AS a) FROM (SELECT 1 AS a, 2 AS b)"),
    ("select", "SELECT * EXCLUDE (b) REPLACE (c + 1 AS c) FROM (SELECT 1 AS a, 2 AS b, 3 AS c)"),
    ("select", "SELECT g, count(*) AS n FROM (VALUES (1), (1), (2)) t(g) GROUP BY ALL ORDER BY ALL"),
    ("select", "SELECT * FROM (VALUES (2, 'b'), (1, 'z'), (1, 'a')) t(x, y) ORDER BY ALL"),
    ("select", "SELECT * FROM (VALUES (2, 'b'), (1, 'z'), (1, 'a')) t(x, y) ORDER BY ALL DESC"),
    # Lists and structs
    ("list", "SELECT [1, 2, 3] AS l, len([1, 2, 3]) AS n"),
    ("list", "SELECT [1, 2, 3][-1] AS last"),
    ("list", "SELECT [1, 2, 3, 4][2:3] AS middle"),
    ("list", "SELECT list_contains([1, 2, 3], 2) AS has_two"),
    ("list", "SELECT {'a': 1, 'b': 'x'} AS s"),
    ("list", "SELECT struct_pack(a := 1, b := 'x')['b'] AS b"),
    ("list", "SELECT [{'k': 'a', 'v': 1}, {'k': 'b', 'v': 2}][2].v AS v"),
    ("list", "SELECT list_sum([1, 2, 3]) AS s, list_aggregate([4, 1, 7], 'max') AS m"),
    ("list", "SELECT list_aggregate([1, 2, 3], 'sum') AS s"),
    ("list", "SELECT g, list(v ORDER BY v) AS vs FROM (VALUES (1, 3), (1, 1), (2, 2)) t(g, v) GROUP BY g ORDER BY g"),
    # Strings
    ("string", "SELECT split_part('a,b,c', ',', 2) AS p, split_part('a,b', ',', 5) AS missing"),
    ("string", "SELECT string_split('a,b,c', ',') AS parts"),
    ("string", "SELECT string_split('a.b.c', '.') AS parts"),
    ("string", "SELECT regexp_replace('a1b2', '[0-9]', 'X') AS first_only"),
    ("string", "SELECT regexp_replace('a1b2', '[0-9]', 'X', 'g') AS all_of_them"),
    ("string", "SELECT regexp_extract('order-123-x', '([0-9]+)', 1) AS num"),
    ("string", "SELECT concat_ws('-', 'a', NULL, 'b') AS s, concat('a', NULL, 'b') AS c, 'a' || NULL AS p"),
    ("string", "SELECT strftime(DATE '2024-03-05', '%d/%m/%Y') AS d"),
    ("string", "SELECT strftime(TIMESTAMP '2024-03-05 15:08:09', '%Y%m%d %I:%M %p') AS t"),
    ("string", "SELECT strftime(DATE '2024-03-05', '%A %B %-d, %Y') AS t"),
    ("string", "SELECT strftime(DATE '2024-03-05', '%a %b %j %y') AS t"),
    ("string", "SELECT strftime(TIMESTAMP '2024-03-05 07:08:09.123456', '%H:%M:%S.%f') AS t"),
    ("string", "SELECT strptime('2024-03-05 07:08:09', '%Y-%m-%d %H:%M:%S') AS t"),
    ("string", "SELECT strptime('05/03/2024', '%d/%m/%Y') AS t"),
    ("string", "SELECT left('hello', 2) AS l, right('hello', 3) AS r"),
    ("string", "SELECT contains('hello', 'ell') AS c, starts_with('hello', 'he') AS s, ends_with('hello', 'lo') AS e"),
    ("string", "SELECT trim('  x  ') AS t, replace('aXbX', 'X', '-') AS r, lpad('7', 3, '0') AS p, strpos('hello', 'l') AS pos"),
    ("string", "SELECT g, string_agg(v, ',' ORDER BY v) AS vs FROM (VALUES (1, 'b'), (1, 'a'), (2, 'c')) t(g, v) GROUP BY g ORDER BY g"),
    ("string", r"SELECT 'abc' LIKE 'a%' AS l, 'a_c' LIKE 'a\_c' ESCAPE '\' AS e"),
    # Casts
    ("cast", "SELECT '42'::INTEGER AS i, CAST('2024-03-05' AS DATE) AS d"),
    ("cast", "SELECT TRY_CAST('x' AS INTEGER) AS bad, TRY_CAST('12' AS INTEGER) AS good"),
    ("cast", "SELECT CAST(9223372036854775807 AS HUGEINT) + 1 AS big"),
    ("cast", "SELECT CAST(x AS HUGEINT) * 1000000000000 AS big FROM (VALUES (100000000000)) t(x)"),
    ("cast", "SELECT CAST(1.005 AS DECIMAL(18,2)) AS a, CAST(2.675 AS DECIMAL(18,2)) AS b"),
    ("cast", "SELECT CAST(x / 100.0 AS DECIMAL(18,2)) AS amount FROM (VALUES (1999), (5), (-250)) t(x) ORDER BY amount"),
    ("cast", "SELECT CAST(round(CAST(x AS DECIMAL(18,2)) * (1 + 0.2), 2) AS DECIMAL(18,2)) AS gross FROM (VALUES (10.05), (0.125), (33.33)) t(x) ORDER BY gross"),
    ("cast", "SELECT CAST(sum(x) AS DECIMAL(18,2)) AS total FROM (VALUES (CAST(0.1 AS DOUBLE)), (CAST(0.2 AS DOUBLE)), (CAST(0.3 AS DOUBLE))) t(x)"),
    ("cast", "SELECT CAST(TIMESTAMP '2024-03-05 23:59:59' AS DATE) AS d, CAST('2024-03-05 07:08:09' AS TIMESTAMP) AS t"),
    ("cast", "SELECT CAST(substr('C000123', 2) AS BIGINT) AS customer_id"),
    ("cast", "SELECT CAST(2.5 AS DOUBLE)::VARCHAR AS s, CAST(true AS VARCHAR) AS b"),
    ("cast", "SELECT CAST(1e20 AS DOUBLE)::VARCHAR AS s"),
    # Aggregates
    ("aggregate", "SELECT count(DISTINCT x) AS n FROM (VALUES (1), (1), (2), (NULL)) t(x)"),
    ("aggregate", "SELECT count(DISTINCT x) FILTER (WHERE y) AS n FROM (VALUES (1, true), (1, true), (2, false), (3, true)) t(x, y)"),
    ("aggregate", "SELECT coalesce(sum(a) FILTER (WHERE k = 'capture'), 0) AS cap, coalesce(-sum(a) FILTER (WHERE k = 'refund'), 0) AS ref FROM (VALUES ('capture', 5.0), ('refund', -2.0)) t(k, a)"),
    ("aggregate", "SELECT min(d) FILTER (WHERE ok) AS first_ok, max(d) FILTER (WHERE ok) AS last_ok FROM (VALUES (DATE '2024-01-01', false), (DATE '2024-01-02', true), (DATE '2024-01-03', true)) t(d, ok)"),
    ("aggregate", "SELECT count(*) FILTER (WHERE NOT c) > 0 AS active FROM (VALUES (true), (false)) t(c)"),
    ("aggregate", "SELECT arg_max(v, t) AS latest, arg_min(v, t) AS earliest FROM (VALUES ('a', 1), ('b', 3), ('c', 2)) x(v, t)"),
    ("aggregate", "SELECT g, any_value(v) AS v FROM (VALUES (1, 'x'), (1, 'x'), (2, 'y')) t(g, v) GROUP BY g ORDER BY g"),
    ("aggregate", "SELECT bool_and(b) AS all_true, bool_or(b) AS any_true FROM (VALUES (true), (false)) t(b)"),
    ("aggregate", "SELECT sum(x) / count(*) AS mean, avg(x) AS a FROM (VALUES (1), (2)) t(x)"),
    # Window functions
    ("window", "SELECT g, t, lag(v, 1, 0) OVER (PARTITION BY g ORDER BY t) AS prev FROM (VALUES (1, 1, 10), (1, 2, 20), (2, 1, 30)) x(g, t, v) ORDER BY g, t"),
    ("window", "SELECT t, rank() OVER (ORDER BY v) AS r, row_number() OVER (ORDER BY v, t) AS rn FROM (VALUES (1, 10), (2, 10), (3, 5)) x(t, v) ORDER BY t"),
    ("window", "SELECT t, sum(v) OVER (ORDER BY t) AS running FROM (VALUES (1, 1), (2, 2), (2, 3), (3, 4)) x(t, v) ORDER BY t, running"),
    ("window", "SELECT t, sum(v) OVER (ORDER BY t ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS s2 FROM (VALUES (1, 1), (2, 2), (3, 4)) x(t, v) ORDER BY t"),
    ("window", "SELECT t, first_value(v) OVER (ORDER BY t) AS f, last_value(v) OVER (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS l FROM (VALUES (1, 'a'), (2, 'b')) x(t, v) ORDER BY t"),
    # Arithmetic
    ("arith", "SELECT -7 // 2 AS q, -7 % 2 AS r"),
    ("arith", "SELECT a / b AS ratio, a // b AS quotient FROM (VALUES (7, 2)) t(a, b)"),
    ("arith", "SELECT 2 ** 10 AS p, 2 ^ 3 AS c"),
    # Epoch and timestamps from numbers
    ("epoch", "SELECT epoch(TIMESTAMP '2024-01-01 00:00:01.5') AS seconds"),
    ("epoch", "SELECT epoch_ms(TIMESTAMP '2024-01-01 00:00:01.5') AS ms"),
    ("epoch", "SELECT to_timestamp(1704067200) AS t"),
    # Shapes of the example project's models
    ("model", "SELECT DISTINCT x FROM (VALUES (1), (1), (2)) t(x) ORDER BY x"),
    ("model", "SELECT CASE c WHEN 'W' THEN 'web' WHEN 'A' THEN 'app' END AS channel FROM (VALUES ('W'), ('A'), ('Z')) t(c) ORDER BY channel NULLS LAST"),
    ("model", "WITH a AS (SELECT 1 AS k, DATE '2024-01-05' AS d), b AS (SELECT 1 AS k, TIMESTAMP '2024-01-01 00:00:00' AS f, TIMESTAMP '2024-02-01 00:00:00' AS t) SELECT a.k, a.d >= b.f AND a.d < b.t AS inside FROM a LEFT JOIN b ON b.k = a.k AND a.d >= b.f AND a.d < b.t"),
    ("model", "SELECT coalesce(CAST(NULL AS DATE), DATE '9999-12-31') AS valid_to, coalesce(CAST(NULL AS TIMESTAMP), TIMESTAMP '9999-12-31 00:00:00') AS ts_to"),
    ("model", "SELECT x, lead(CAST(t AS TIMESTAMP)) OVER (PARTITION BY x ORDER BY t) IS NULL AS is_current FROM (VALUES (1, '2024-01-01 00:00:00'), (1, '2024-02-01 00:00:00')) v(x, t) ORDER BY x, is_current"),
    ("model", "SELECT coalesce(d > DATE '2024-03-01' - 30, false) AS recent FROM (VALUES (DATE '2024-02-15'), (NULL)) t(d) ORDER BY recent"),
    ("model", "SELECT 1 AS x UNION ALL SELECT 2 AS x ORDER BY x"),
]

OUTCOMES = ["same", "refused", "fails on Spark", "different result"]
TRANSLATORS = ["hubforge", "polyglot-sql", "sqlglot", "sqlparser-rs"]
LABELS = {
    "hubforge": "hubforge (Rust, sqlparser + rewrites)",
    "polyglot-sql": "polyglot-sql (Rust)",
    "sqlglot": "sqlglot (Python)",
    "sqlparser-rs": "sqlparser-rs round trip (no rewriting)",
}


def one_line(text, limit=160):
    """The first non-empty line of an error message, shortened."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    line = lines[0] if lines else type(text).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- translators -------------------------------------------------------------


def translate_hubforge(queries, wait_minutes):
    """hubforge's translation of every query: {"spark": sql} or {"refused": why}."""
    path = os.environ.get("HUBFORGE_BENCH", DEFAULT_BENCH)
    deadline = time.time() + wait_minutes * 60
    while not (os.path.isfile(path) and os.access(path, os.X_OK)):
        if time.time() >= deadline:
            sys.exit(f"translators: {path} does not exist; build hubforge-bench or set HUBFORGE_BENCH")
        print(f"translators: waiting for {path}", file=sys.stderr)
        time.sleep(60)
    out = subprocess.run(
        [path, "to-spark"], input="".join(q + "\n" for q in queries),
        capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        sys.exit(f"translators: {path} to-spark exited {out.returncode}:\n{out.stderr}")
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    if len(lines) != len(queries):
        sys.exit(f"translators: {path} to-spark answered {len(lines)} lines for {len(queries)} queries")
    result = []
    for q, line in zip(queries, lines):
        if line.get("duckdb") != q:
            sys.exit(f"translators: {path} to-spark answered out of order:\n  {q}\n  {line}")
        if "spark" in line:
            result.append({"spark": line["spark"]})
        else:
            result.append({"refused": one_line(line.get("error", "no translation"))})
    return result


def translate_with(function, queries):
    result = []
    for q in queries:
        try:
            statements = function(q)
        except Exception as e:  # the translator's own refusal or parse error
            result.append({"refused": f"{type(e).__name__}: {one_line(e)}"})
            continue
        statements = [s for s in statements if s and s.strip()]
        if len(statements) != 1:
            result.append({"refused": f"{len(statements)} statements"})
        else:
            result.append({"spark": statements[0]})
    return result


def translate_polyglot(queries):
    import polyglot_sql

    return translate_with(
        lambda q: polyglot_sql.transpile(q, read="duckdb", write="spark", unsupported_level="raise"),
        queries,
    )


def translate_sqlglot(queries):
    import sqlglot
    from sqlglot.errors import ErrorLevel

    return translate_with(
        lambda q: sqlglot.transpile(q, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE),
        queries,
    )


def translate_sqlparser(queries):
    import sqloxide

    return translate_with(
        lambda q: sqloxide.restore_ast(sqloxide.parse_sql(q, dialect="duckdb")), queries
    )


# --- results and their comparison ---------------------------------------------


def plain(value):
    """A result value as plain Python: Spark's Row becomes a dict."""
    if hasattr(value, "asDict") and callable(value.asDict):
        return {k: plain(v) for k, v in value.asDict(recursive=False).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def is_number(v):
    return isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool)


def text(v):
    """The text a value prints as, the same for both engines."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, list):
        return "[" + ", ".join(text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {text(x)}" for k, x in v.items()) + "}"
    return str(v)


def same_value(d, s):
    if is_number(d) and is_number(s):
        if isinstance(d, float) or isinstance(s, float):
            x, y = float(d), float(s)
            if x != x or y != y:  # NaN
                return x != x and y != y
            if x in (float("inf"), float("-inf")) or y in (float("inf"), float("-inf")):
                return x == y
            return abs(x - y) <= 1e-12 * max(abs(x), 1.0)
        return decimal.Decimal(d) == decimal.Decimal(s)
    if isinstance(d, list) and isinstance(s, list):
        return len(d) == len(s) and all(same_value(a, b) for a, b in zip(d, s))
    if isinstance(d, dict) and isinstance(s, dict):
        return list(map(str.lower, d)) == list(map(str.lower, s)) and all(
            same_value(a, b) for a, b in zip(d.values(), s.values())
        )
    return text(d) == text(s)


PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def shorten(s, limit=60):
    return s if len(s) <= limit else s[: limit - 1] + "…"


def compare(expected, got):
    """None when Spark's result is DuckDB's, else why not (short)."""
    (dcols, drows), (scols, srows) = expected, got
    if len(dcols) != len(scols):
        return f"{len(scols)} columns, DuckDB {len(dcols)}: {', '.join(scols)}"
    for dn, sn in zip(dcols, scols):
        if PLAIN_NAME.match(dn) and dn.lower() != sn.lower():
            return f"column `{shorten(sn, 40)}` where DuckDB has `{dn}`"
    if len(drows) != len(srows):
        return f"{len(srows)} rows, DuckDB {len(drows)}"
    for i, (dr, sr) in enumerate(zip(drows, srows)):
        for c, (dv, sv) in enumerate(zip(dr, sr)):
            if not same_value(dv, sv):
                where = f"row {i + 1} " if len(drows) > 1 else ""
                return f"{where}{dcols[c]}: {shorten(text(sv), 45)}, DuckDB {shorten(text(dv), 45)}"
    return None


def duckdb_results(queries):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    results = []
    for q in queries:
        try:
            cur = con.execute(q)
            rows = cur.fetchall()
            cols = [d[0] for d in cur.description]
            results.append((cols, [[plain(v) for v in r] for r in rows]))
        except Exception as e:
            sys.exit(f"translators: the case fails on DuckDB: {q}\n  {one_line(e)}")
    return results


class Spark:
    def __init__(self):
        from pyspark.sql import SparkSession

        # pyspark logs every failing query's JVM stack trace; the report has the message.
        logging.getLogger("SQLQueryContextLogger").disabled = True

        url = os.environ.get("SPARK_CONNECT_URL") or (
            "sc://localhost:" + os.environ.get("SPARK_CONNECT_PORT", "15002")
        )
        self.url = url
        self.session = SparkSession.builder.remote(url).getOrCreate()
        self.session.conf.set("spark.sql.session.timeZone", "UTC")
        self.cache = {}

    def run(self, sql):
        """(columns, rows) or an error message."""
        if sql not in self.cache:
            try:
                df = self.session.sql(sql)
                rows = df.collect()
                self.cache[sql] = (list(df.columns), [[plain(v) for v in r] for r in rows])
            except Exception as e:
                cls = getattr(e, "getCondition", None) or getattr(e, "getErrorClass", None)
                condition = None
                try:
                    condition = cls() if cls else None
                except Exception:
                    pass
                msg = one_line(e, 400)
                if condition and condition not in msg:
                    msg = f"{condition}: {msg}"
                # Spark's boilerplate says nothing about the translation.
                msg = re.sub(r" on search path \[.*?\]\]?", "", msg)
                msg = re.sub(r"\.? ?SQLSTATE: \w+.*$", "", msg)
                msg = shorten(msg, 150)
                self.cache[sql] = msg
        return self.cache[sql]


# --- the report ---------------------------------------------------------------


def versions(spark, chosen):
    def v(pkg):
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    rows = [("DuckDB (expected results)", f"duckdb {v('duckdb')} (Python)")]
    try:
        ansi = spark.session.conf.get("spark.sql.ansi.enabled")
    except Exception:
        ansi = "?"
    rows.append(("Spark", f"{spark.session.version} via Spark Connect {spark.url} "
                          f"(pyspark {v('pyspark')}; spark.sql.ansi.enabled={ansi}, session time zone UTC)"))
    if "hubforge" in chosen:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        rows.append(("hubforge", f"{os.environ.get('HUBFORGE_BENCH', DEFAULT_BENCH)} to-spark "
                                 f"(work tree at commit {rev or '?'})"))
    if "polyglot-sql" in chosen:
        rows.append(("polyglot-sql", f"polyglot-sql {v('polyglot-sql')}"))
    if "sqlglot" in chosen:
        rows.append(("sqlglot", f"sqlglot {v('sqlglot')}"))
    if "sqlparser-rs" in chosen:
        rows.append(("sqlparser-rs", f"sqloxide {v('sqloxide')}"))
    return rows


def cell(s):
    return s.replace("|", "\\|").replace("\n", " ")


def report(chosen, queries, groups, translations, outcomes, spark):
    out = ["# DuckDB → Spark SQL translators: differential test", ""]
    out.append("Each case runs on DuckDB (expected) and, translated, on Spark. "
               "Outcomes: **same**; **refused** (the translator says it cannot translate); "
               "**fails on Spark**; **different result** (runs, silently wrong).")
    out.append("")
    out += ["| what | version |", "| --- | --- |"]
    out += [f"| {a} | {cell(b)} |" for a, b in versions(spark, chosen)]
    out.append("")
    out.append("## Summary")
    out.append("")
    out.append("| translator | " + " | ".join(OUTCOMES) + " |")
    out.append("| --- | " + " | ".join("---:" for _ in OUTCOMES) + " |")
    for t in chosen:
        counts = [sum(1 for o in outcomes[t] if o[0] == k) for k in OUTCOMES]
        out.append(f"| {LABELS[t]} | " + " | ".join(str(c) for c in counts) + " |")
    out.append("")
    for t in chosen:
        counts = {k: sum(1 for o in outcomes[t] if o[0] == k) for k in OUTCOMES}
        out.append(f"- {LABELS[t]}: " + ", ".join(f"{counts[k]} {k}" for k in OUTCOMES)
                   + f" (of {len(queries)})")
    out.append("")
    out.append("## Cases")
    out.append("")
    out.append("| # | group | DuckDB query | " + " | ".join(LABELS[t] for t in chosen) + " |")
    out.append("| ---: | --- | --- | " + " | ".join("---" for _ in chosen) + " |")
    for i, q in enumerate(queries):
        cells = []
        for t in chosen:
            outcome, why = outcomes[t][i]
            cells.append(outcome if not why else f"{outcome}: {why}")
        out.append(f"| {i + 1} | {groups[i]} | `{cell(shorten(q, 90))}` | "
                   + " | ".join(cell(c) for c in cells) + " |")
    out.append("")
    out.append("## Translations")
    out.append("")
    for i, q in enumerate(queries):
        out.append(f"{i + 1}. DuckDB: `{q}`")
        for t in chosen:
            tr = translations[t][i]
            shown = tr["spark"] if "spark" in tr else f"(refused: {tr['refused']})"
            out.append(f"   - {t} [{outcomes[t][i][0]}]: `{shown}`")
    out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--translators", default=",".join(TRANSLATORS),
                        help="comma-separated, of " + ", ".join(TRANSLATORS))
    parser.add_argument("--wait-for-hubforge", type=float, default=0, metavar="MINUTES",
                        help="wait this long for the HUBFORGE_BENCH binary to appear (checked every minute)")
    parser.add_argument("--out", default="/tmp/translators.md")
    parser.add_argument("--json", help="also write every case's translations and outcomes as JSON")
    args = parser.parse_args()
    chosen = [t.strip() for t in args.translators.split(",") if t.strip()]
    for t in chosen:
        if t not in TRANSLATORS:
            parser.error(f"unknown translator {t}; known: {', '.join(TRANSLATORS)}")
    queries = [q for _, q in CASES]
    groups = [g for g, _ in CASES]
    for q in queries:
        assert "\n" not in q, q

    expected = duckdb_results(queries)
    translations = {}
    for t in chosen:
        if t == "hubforge":
            translations[t] = translate_hubforge(queries, args.wait_for_hubforge)
        elif t == "polyglot-sql":
            translations[t] = translate_polyglot(queries)
        elif t == "sqlglot":
            translations[t] = translate_sqlglot(queries)
        else:
            translations[t] = translate_sqlparser(queries)

    spark = Spark()
    outcomes = {t: [] for t in chosen}
    for i, q in enumerate(queries):
        for t in chosen:
            tr = translations[t][i]
            if "refused" in tr:
                outcomes[t].append(("refused", tr["refused"]))
                continue
            got = spark.run(tr["spark"])
            if isinstance(got, str):
                outcomes[t].append(("fails on Spark", got))
                continue
            why = compare(expected[i], got)
            outcomes[t].append(("same", None) if why is None else ("different result", why))
            tr["result"] = [[text(v) for v in r] for r in got[1]]

    md = report(chosen, queries, groups, translations, outcomes, spark)
    with open(args.out, "w") as f:
        f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([
                {"group": groups[i], "duckdb": q,
                 "expected": {"columns": expected[i][0], "rows": [[text(v) for v in r] for r in expected[i][1]]},
                 "translators": {t: {**translations[t][i], "outcome": outcomes[t][i][0],
                                     "why": outcomes[t][i][1]} for t in chosen}}
                for i, q in enumerate(queries)
            ], f, indent=1, ensure_ascii=False)
    print(md)


if __name__ == "__main__":
    main()
