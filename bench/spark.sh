#!/usr/bin/env bash
# The 10-million-row project built on local Spark (Spark Connect, local[2]) and on
# embedded DuckDB in the same run, then a 1-month backfill and a whole-history
# backfill of the models over the first source on each.
#
#   bench/spark.sh [WORK_DIR] [RUNS]    # default /tmp/hubforge-spark-bench, 3 runs
#
# Needs hubforge and hubforge-bench built with `--features spark` (HUBFORGE_BIN_DIR,
# default $CARGO_TARGET_DIR or ~/.cache/hubforge-target as .ci/run uses, then debug/) and a
# Spark Connect server (scripts/spark-connect.sh start; SPARK_URL to use another).
# Each run starts from an empty warehouse (a new DuckDB file, new Spark schemas).
# Prints a markdown table of the median wall seconds and hubforge's own peak memory
# (the Spark server's JVM, driver memory 2 GiB, is not in it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${1:-/tmp/hubforge-spark-bench}
RUNS=${2:-3}
BIN=${HUBFORGE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/hubforge-target}/debug}
URL=${SPARK_URL:-sc://localhost:15002}
VENV=${HUBFORGE_SPARK_VENV:-$HOME/.cache/hubforge-spark-venv}
PREFIX=bench_$(date -u +%Y%m%d%H%M%S)
BF=(--backfill --select "stg_00000+")
MONTH=(--start 2024-03-01 --end 2024-04-01)

say() { printf '[spark-bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

"$REPO/scripts/spark-connect.sh" status >/dev/null 2>&1 ||
    { echo "no Spark Connect server answers: scripts/spark-connect.sh start" >&2; exit 1; }

drop_schemas() {
    "$VENV/bin/python" - "$URL" "$PREFIX" "$RUNS" <<'PY'
import sys
from pyspark.sql import SparkSession
s = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
for r in range(1, int(sys.argv[3]) + 1):
    for part in ["", "__data", "__sources", "__hubforge"]:
        s.sql(f"DROP DATABASE IF EXISTS `{sys.argv[2]}_{r}{part}` CASCADE").collect()
PY
}
trap drop_schemas EXIT

rm -rf "$WORK"
mkdir -p "$WORK"
say "generating the 10M-row project"
"$BIN/hubforge-bench" generate --models 20 --sources 10 --days 365 --rows-per-day 2740 \
    --out "$WORK/duckdb" >/dev/null
cp -r "$WORK/duckdb" "$WORK/spark"
sed -i "s|^path = \"warehouse.duckdb\"|engine = \"spark\"\nurl = \"$URL\"\nschema = \"${PREFIX}_0\"|" \
    "$WORK/spark/hubforge.toml"
grep -q 'engine = "spark"' "$WORK/spark/hubforge.toml"
: > "$WORK/results.tsv"

# measure CASE ENGINE ARGS...: one timed hubforge command.
measure() {
    local case=$1 engine=$2
    shift 2
    say "run $run: $case on $engine"
    local log
    log=$WORK/$engine-$(echo "$case" | tr -c 'A-Za-z0-9' '_').log
    (cd "$WORK/$engine" && /usr/bin/time -f '%e %M' -o "$WORK/time.out" "$BIN/hubforge" -q "$@") \
        >"$log" 2>&1 || { echo "hubforge $* failed on $engine:" >&2; tail -n 20 "$log" >&2; exit 1; }
    local wall rss
    read -r wall rss < "$WORK/time.out"
    printf '%s\t%s\t%s\t%s\n' "$case" "$engine" "$wall" "$((rss / 1024))" >> "$WORK/results.tsv"
}

for ((run = 1; run <= RUNS; run++)); do
    rm -f "$WORK/duckdb/warehouse.duckdb" "$WORK/duckdb/warehouse.duckdb.wal"
    sed -i "s|^schema = \"${PREFIX}_.*\"|schema = \"${PREFIX}_$run\"|" "$WORK/spark/hubforge.toml"
    for engine in duckdb spark; do
        measure "first build" "$engine" build
        measure "backfill March" "$engine" build "${BF[@]}" "${MONTH[@]}"
        measure "backfill year" "$engine" build "${BF[@]}"
    done
done

# Medians of the runs, and the backfill's share of each engine's first build.
python3 - "$WORK/results.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cases = list(dict.fromkeys((c, e) for c, e, _, _ in rows))
med = {}
print("| case | engine | wall s (median) | runs | hubforge peak MiB |")
print("|---|---|---:|---|---:|")
for c, e in cases:
    walls = [float(w) for cc, ee, w, _ in rows if (cc, ee) == (c, e)]
    mem = max(int(m) for cc, ee, _, m in rows if (cc, ee) == (c, e))
    med[c, e] = statistics.median(walls)
    print(f"| {c} | {e} | {med[c, e]:.2f} | {', '.join(f'{w:.2f}' for w in walls)} | {mem} |")
print()
for e in dict.fromkeys(e for _, e in cases):
    f, m, y = med["first build", e], med["backfill March", e], med["backfill year", e]
    print(f"- {e}: March backfill = 1/{f / m:.1f} of the first build, 1/{y / m:.1f} of the year backfill")
print(f"- Spark first build / DuckDB first build: {med['first build', 'spark'] / med['first build', 'duckdb']:.1f}x")
PY
