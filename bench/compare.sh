#!/usr/bin/env bash
# hubforge side by side with the raw SQL in DuckDB, dbt-core (dbt-duckdb) and
# SQLMesh, on the same generated projects, in one run. See BENCHMARKS.md,
# "Side by side (bench/compare.sh)".
#
#   bench/compare.sh                                   # everything, full size, 3 runs
#   COMPARE_QUICK=1 bench/compare.sh                   # small projects, 1 run (10-15 minutes)
#   COMPARE_SECTIONS=build100,backfill bench/compare.sh
#
# Environment:
#   COMPARE_SECTIONS  comma-separated, from: load plan build100 build10m build1k
#                     backfill rows (default: all of them, in that order)
#   COMPARE_TOOLS     comma-separated, from: hubforge baseline dbt sqlmesh (default: all)
#   COMPARE_RUNS      runs of each measurement; the table gives the median (default 3,
#                     1 with COMPARE_QUICK=1)
#   COMPARE_QUICK     1: small projects of the same shapes, for trying the script out
#   COMPARE_BATCH366  1 (default): the build sections also build a copy of the
#                     hubforge project generated with --batch 366 (one batch per model)
#   COMPARE_DIR       where projects, warehouses and logs go (default /tmp/hubforge-compare;
#                     the full run needs about 12 GB free there)
#   COMPARE_OUT       the markdown table (default $COMPARE_DIR/compare.md)
#   COMPARE_VENV      Python environment with dbt and SQLMesh (default
#                     $HOME/.cache/hubforge-bench-venv; created with the pinned
#                     versions below when it has no dbt or sqlmesh)
#   HUBFORGE_BIN      directory of hubforge and hubforge-bench (default: built here
#                     with `cargo build --bins` into $CARGO_TARGET_DIR or target/)
#
# Every command is timed with /usr/bin/time (wall, max RSS); its output goes to
# $COMPARE_DIR/logs. Nothing here has a timeout: the full run should take one to
# two hours on 2 cores (an estimate), most of it SQLMesh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=${COMPARE_QUICK:-0}
if [[ $QUICK == 1 ]]; then RUNS=${COMPARE_RUNS:-1}; else RUNS=${COMPARE_RUNS:-3}; fi
SECTIONS=${COMPARE_SECTIONS:-load,plan,build100,build10m,build1k,backfill,rows}
TOOLS=${COMPARE_TOOLS:-hubforge,baseline,dbt,sqlmesh}
BATCH366=${COMPARE_BATCH366:-1}
WORK=${COMPARE_DIR:-/tmp/hubforge-compare}
OUT=${COMPARE_OUT:-$WORK/compare.md}
VENV=${COMPARE_VENV:-$HOME/.cache/hubforge-bench-venv}

# The peers' versions this comparison is pinned to. dbt-core 1.12 does not
# install without reaching outside the package registry (its
# dbt-core-experimental-parser downloads a wheel while building), so 1.11.
PINS=(dbt-core==1.11.16 dbt-duckdb==1.11.1 sqlmesh==0.236.4 duckdb==1.5.6)

# Project sizes: full, or quick (same shapes, small).
if [[ $QUICK == 1 ]]; then
    LOAD_SIZES=(100 300)
    PLAN_MODELS=100
    BUILD100=(--models 30 --sources 3 --days 120 --rows-per-day 20)
    BUILD10M=(--models 20 --sources 10 --days 120 --rows-per-day 50)
    BUILD1K=(--models 200 --sources 10 --days 30 --rows-per-day 10)
else
    LOAD_SIZES=(1000 5000 10000)
    PLAN_MODELS=1000
    BUILD100=(--models 100 --sources 10 --days 365 --rows-per-day 274)
    BUILD10M=(--models 20 --sources 10 --days 365 --rows-per-day 2740)
    BUILD1K=(--models 1000 --sources 10 --days 30 --rows-per-day 100)
fi
# The backfill: March 2024 of the models over the first source, in the 10M-row
# project, then their whole history (the year at full size).
BF_START=2024-03-01
BF_END=2024-04-01     # exclusive (hubforge, dbt); SQLMesh's end is inclusive: 2024-03-31
BF_MODEL=stg_00000

has() { [[ ",$1," == *",$2,"* ]]; }
want_tool() { has "$TOOLS" "$1"; }
say() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

mkdir -p "$WORK/logs"
TSV=$WORK/results.tsv
: > "$TSV"

# --- binaries and the Python environment -------------------------------------

if [[ -n ${HUBFORGE_BIN:-} ]]; then
    B=$HUBFORGE_BIN
else
    say "cargo build --bins"
    (cd "$REPO" && cargo build --bins --quiet)
    B=${CARGO_TARGET_DIR:-$REPO/target}/debug
fi
HF=$B/hubforge
HFB=$B/hubforge-bench

if want_tool dbt || want_tool sqlmesh; then
    if [[ ! -x $VENV/bin/dbt || ! -x $VENV/bin/sqlmesh ]]; then
        say "creating $VENV with ${PINS[*]}"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet "${PINS[@]}"
    fi
fi
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
export SQLMESH__DISABLE_ANONYMIZED_ANALYTICS=1
DBT=$VENV/bin/dbt
SQLMESH=$VENV/bin/sqlmesh
PY=$VENV/bin/python

VERSIONS="hubforge $(git -C "$REPO" rev-parse --short HEAD)"
if want_tool dbt || want_tool sqlmesh; then
    VERSIONS+=$("$PY" - <<'EOF'
from importlib.metadata import version
print("".join(f", {p} {version(p)}" for p in ["dbt-core", "dbt-duckdb", "sqlmesh", "duckdb"]), end="")
EOF
)
fi

# Free space: the 10M-row project is ~400 MB of CSV in each of its copies.
avail_gb=$(df -Pk "$WORK" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
if [[ $QUICK != 1 ]] && (( avail_gb < 12 )); then
    say "warning: only ${avail_gb} GB free under $WORK; the full run needs about 12 GB"
fi

# --- measuring ----------------------------------------------------------------

# measure CASE TOOL DIR CMD...: run CMD once in DIR under /usr/bin/time and
# append "case, tool, wall s, max RSS KB" to the results (FAIL if it failed).
measure() {
    local case=$1 tool=$2 dir=$3
    shift 3
    local log tf=$WORK/time.out
    log=$WORK/logs/$(printf '%s_%s' "$case" "$tool" | tr -c 'A-Za-z0-9_.-' '_').log
    say "$case: $tool"
    # No standard input: a tool that prompts fails instead of waiting.
    if (cd "$dir" && /usr/bin/time -f '%e %M' -o "$tf" "$@") </dev/null >>"$log" 2>&1; then
        local wall rss
        read -r wall rss < <(tail -n 1 "$tf")
        printf '%s\t%s\t%s\t%s\n' "$case" "$tool" "$wall" "$rss" >> "$TSV"
    else
        say "FAILED: $case: $tool (see $log)"
        printf '%s\t%s\tFAIL\tFAIL\n' "$case" "$tool" >> "$TSV"
    fi
}

# untimed STEP DIR CMD...: a step that prepares a measurement; fails the script.
untimed() {
    local step=$1 dir=$2
    shift 2
    local log
    log=$WORK/logs/$(printf 'prep_%s' "$step" | tr -c 'A-Za-z0-9_.-' '_').log
    say "prepare: $step"
    if ! (cd "$dir" && "$@") </dev/null >>"$log" 2>&1; then
        say "FAILED: $step (see $log)"
        tail -n 20 "$log" >&2
        exit 1
    fi
}

# generate NAME ARGS...: the same project for each tool wanted, under $WORK/NAME/.
generate() {
    local name=$1
    shift
    rm -rf "${WORK:?}/$name"
    mkdir -p "$WORK/$name"
    if want_tool hubforge || want_tool baseline; then
        "$HFB" generate "$@" --out "$WORK/$name/hubforge" > /dev/null
    fi
    if want_tool dbt; then "$HFB" export-dbt "$@" --out "$WORK/$name/dbt" > /dev/null; fi
    if want_tool sqlmesh; then "$HFB" export-sqlmesh "$@" --out "$WORK/$name/sqlmesh" > /dev/null; fi
}

fresh_hubforge() { rm -f "$1"/warehouse.duckdb*; }
fresh_dbt() { rm -rf "$1/target" "$1/logs" "$1"/warehouse.duckdb*; }
fresh_sqlmesh() { rm -rf "$1/.cache" "$1/logs" "$1"/warehouse.duckdb*; }

# build_once NAME: a first build by each tool, untimed (for what needs a built warehouse).
build_once() {
    local p=$WORK/$1
    if want_tool hubforge; then
        fresh_hubforge "$p/hubforge"
        untimed "$1 build hubforge" "$p/hubforge" "$HF" -q build
    fi
    if want_tool dbt; then
        fresh_dbt "$p/dbt"
        untimed "$1 build dbt" "$p/dbt" "$DBT" run --profiles-dir .
    fi
    if want_tool sqlmesh; then
        fresh_sqlmesh "$p/sqlmesh"
        untimed "$1 build sqlmesh" "$p/sqlmesh" "$SQLMESH" plan --auto-apply --no-prompts
    fi
}

# --- sections -----------------------------------------------------------------

section_load() {
    local n
    for n in "${LOAD_SIZES[@]}"; do
        generate "load$n" --models "$n" --sources 10 --days 30 --rows-per-day 10
        local p=$WORK/load$n case="load: $n models"
        for ((r = 1; r <= RUNS; r++)); do
            if want_tool hubforge; then measure "$case" hubforge "$p/hubforge" "$HFB" load .; fi
            if want_tool dbt; then
                fresh_dbt "$p/dbt"
                measure "$case" "dbt parse (fresh)" "$p/dbt" "$DBT" parse --profiles-dir .
            fi
            if want_tool sqlmesh; then
                rm -rf "$p/sqlmesh/.cache"
                measure "$case" "sqlmesh load (cold)" "$p/sqlmesh" "$PY" "$REPO/bench/sqlmesh_load.py" .
            fi
        done
    done
}

section_plan() {
    local n=$PLAN_MODELS
    generate plan --models "$n" --sources 10 --days 30 --rows-per-day 10
    local p=$WORK/plan
    # State written by a real build of each tool, then one column of one
    # intermediate model (daily incremental, mid-DAG) changed in all of them.
    build_once plan
    if want_tool dbt; then
        rm -rf "$WORK/plan/dbt_state"
        mkdir -p "$WORK/plan/dbt_state"
        cp "$p/dbt/target/manifest.json" "$WORK/plan/dbt_state/"
    fi
    local model
    model=$(printf 'int_%05d' $((n * 3 / 10)))
    local t
    for t in hubforge dbt sqlmesh; do
        if [[ -f $p/$t/models/intermediate/$model.sql ]]; then
            sed -i 's/sum(r.quantity) AS quantity/sum(r.quantity) * 2 AS quantity/' \
                "$p/$t/models/intermediate/$model.sql"
        fi
    done
    local case="plan: one change, $n models"
    for ((r = 1; r <= RUNS; r++)); do
        if want_tool hubforge; then measure "$case" hubforge "$p/hubforge" "$HF" plan; fi
        if want_tool dbt; then
            rm -rf "$p/dbt/target"
            measure "$case" "dbt ls -s state:modified+ (fresh)" "$p/dbt" \
                "$DBT" ls -s state:modified+ --state "$WORK/plan/dbt_state" --profiles-dir .
        fi
        if want_tool sqlmesh; then
            rm -rf "$p/sqlmesh/.cache"
            measure "$case" "sqlmesh plan --explain (cold)" "$p/sqlmesh" \
                "$SQLMESH" plan --explain --no-prompts
        fi
    done
    say "plan: changed $model; what each tool plans is in $WORK/logs/plan*"
}

# section_build NAME CASE ARGS...: first builds of one project by each tool.
section_build() {
    local name=$1 case=$2
    shift 2
    generate "$name" "$@"
    local p=$WORK/$name
    if want_tool hubforge && [[ $BATCH366 == 1 ]]; then
        rm -rf "$p/hubforge366"
        "$HFB" generate "$@" --batch 366 --out "$p/hubforge366" > /dev/null
    fi
    for ((r = 1; r <= RUNS; r++)); do
        if want_tool hubforge; then
            fresh_hubforge "$p/hubforge"
            measure "$case" hubforge "$p/hubforge" "$HF" -q build
            if [[ $BATCH366 == 1 ]]; then
                fresh_hubforge "$p/hubforge366"
                measure "$case" "hubforge, batch 366" "$p/hubforge366" "$HF" -q build
                rm -f "$p"/hubforge366/warehouse.duckdb*
            fi
        fi
        if want_tool baseline; then
            measure "$case" "baseline (DuckDB directly)" "$p/hubforge" \
                "$HFB" baseline . --database "$p/baseline.duckdb"
            rm -f "$p"/baseline.duckdb*
        fi
        if want_tool dbt; then
            fresh_dbt "$p/dbt"
            measure "$case" "dbt run" "$p/dbt" "$DBT" run --profiles-dir .
        fi
        if want_tool sqlmesh; then
            fresh_sqlmesh "$p/sqlmesh"
            measure "$case" "sqlmesh plan --auto-apply" "$p/sqlmesh" \
                "$SQLMESH" plan --auto-apply --no-prompts
        fi
    done
    # The last run's warehouses stay for the backfill and row sections.
    touch "$p/.built"
}

section_backfill() {
    local p=$WORK/build10m
    if [[ ! -f $p/.built ]]; then
        generate build10m "${BUILD10M[@]}"
        build_once build10m
        touch "$p/.built"
    fi
    local what
    for what in "March" "whole history"; do
        local case="backfill $BF_MODEL+: $what"
        for ((r = 1; r <= RUNS; r++)); do
            if [[ $what == March ]]; then
                if want_tool hubforge; then
                    measure "$case" hubforge "$p/hubforge" "$HF" -q build --backfill \
                        --select "$BF_MODEL+" --start "$BF_START" --end "$BF_END"
                fi
                if want_tool dbt; then
                    measure "$case" "dbt run -s $BF_MODEL+ --vars" "$p/dbt" "$DBT" run --profiles-dir . \
                        -s "$BF_MODEL+" --vars "{start: '$BF_START', end: '$BF_END'}"
                fi
                if want_tool sqlmesh; then
                    measure "$case" "sqlmesh plan --restate-model" "$p/sqlmesh" "$SQLMESH" plan \
                        --restate-model "synthetic.$BF_MODEL" --start "$BF_START" --end 2024-03-31 \
                        --auto-apply --no-prompts
                fi
            else
                if want_tool hubforge; then
                    measure "$case" hubforge "$p/hubforge" "$HF" -q build --backfill --select "$BF_MODEL+"
                fi
                if want_tool dbt; then
                    measure "$case" "dbt run -s $BF_MODEL+" "$p/dbt" "$DBT" run --profiles-dir . \
                        -s "$BF_MODEL+"
                fi
                if want_tool sqlmesh; then
                    measure "$case" "sqlmesh plan --restate-model" "$p/sqlmesh" "$SQLMESH" plan \
                        --restate-model "synthetic.$BF_MODEL" --auto-apply --no-prompts
                fi
            fi
        done
    done
}

# Rows per model in each tool's warehouse: the tools must have built the same
# thing for the timings to compare. The 100-model project after its first
# builds, and the 10M-row project (after the backfills, when they ran).
# hubforge-bench reads all three warehouses (its DuckDB reads the older
# storage format of the peers' DuckDB, not the other way round).
section_rows() {
    local p=$WORK/build100
    if [[ ! -f $p/.built ]]; then
        generate build100 "${BUILD100[@]}"
        build_once build100
        touch "$p/.built"
    fi
    rows_of build100
    if [[ -f $WORK/build10m/.built ]]; then rows_of build10m; fi
}

# rows_of NAME: compare rows per model of each tool's warehouse of $WORK/NAME.
rows_of() {
    local p=$WORK/$1 t schema
    say "rows: $1"
    for t in hubforge dbt sqlmesh; do
        schema=main
        [[ $t == sqlmesh ]] && schema=synthetic
        rm -f "$p/rows_$t.tsv"
        if [[ -f $p/$t/warehouse.duckdb ]]; then
            "$HFB" count "$p/$t/warehouse.duckdb" --schema "$schema" > "$p/rows_$t.tsv"
        fi
    done
    python3 - "$p" "$1" >> "$WORK/rows.txt" <<'PY'
import os, sys
p, name = sys.argv[1], sys.argv[2]
counts = {}
for tool in ("hubforge", "dbt", "sqlmesh"):
    f = os.path.join(p, f"rows_{tool}.tsv")
    if os.path.exists(f):
        counts[tool] = {n: (int(c), None if s == "NULL" else float(s))
                        for n, c, s in (l.rstrip("\n").split("\t") for l in open(f))}
tools = list(counts)
names = sorted(set().union(*(c.keys() for c in counts.values()))) if counts else []
def same(n):
    vals = [counts[t].get(n) for t in tools]
    if any(v is None for v in vals):
        return False
    # The same row count; sum(amount) rounded to units, equal within 1 (float
    # sums added in another order can differ in the last cent).
    sums = [v[1] for v in vals]
    return len({v[0] for v in vals}) == 1 and (
        all(s is None for s in sums)
        or (None not in sums and max(sums) - min(sums) <= 1))
ok = [n for n in names if same(n)]
rows = sum(counts[tools[0]][n][0] for n in names if n in counts[tools[0]]) if tools else 0
print(f"{name}: {len(ok)} of {len(names)} models with the same row count and sum(amount) "
      f"in {', '.join(tools)} ({rows:,} rows in all)")
for n in names:
    if n not in ok:
        print(f"  differs: {n}: " + ", ".join(f"{t} {counts[t].get(n)}" for t in tools))
PY
    tail -n 1 "$WORK/rows.txt" >&2
}

# shape --models M --sources S --days D --rows-per-day R: "M models, N source rows".
shape() { printf '%s models, %s source rows' "$2" "$(($4 * $6 * $8))"; }

# --- run ------------------------------------------------------------------------

: > "$WORK/rows.txt"
for s in ${SECTIONS//,/ }; do
    case $s in
        load) section_load ;;
        plan) section_plan ;;
        build100) section_build build100 "first build: $(shape "${BUILD100[@]}")" "${BUILD100[@]}" ;;
        build10m) section_build build10m "first build: $(shape "${BUILD10M[@]}")" "${BUILD10M[@]}" ;;
        build1k) section_build build1k "first build: $(shape "${BUILD1K[@]}")" "${BUILD1K[@]}" ;;
        backfill) section_backfill ;;
        rows) section_rows ;;
        *) say "unknown section: $s"; exit 2 ;;
    esac
done

# --- the table ------------------------------------------------------------------

MACHINE=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
CORES=$(nproc)
MEM=$(free -g | awk '/^Mem:/ { print $2 " GiB" }')
python3 - "$TSV" "$WORK/rows.txt" "$RUNS" "$QUICK" "$MACHINE" "$CORES" "$MEM" "$VERSIONS" \
    "${BUILD100[*]}" "${BUILD10M[*]}" "${BUILD1K[*]}" "${LOAD_SIZES[*]}" > "$OUT" <<'EOF'
import statistics, sys, datetime
tsv, rows, runs, quick, machine, cores, mem, versions, b100, b10m, b1k, loads = sys.argv[1:]
results = {}
for line in open(tsv):
    case, tool, wall, rss = line.rstrip("\n").split("\t")
    results.setdefault(case, {}).setdefault(tool, []).append((wall, rss))
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
print(f"# bench/compare.sh{' (quick mode: small projects)' if quick == '1' else ''}\n")
print(f"{now}; {machine}, {cores} cores, {mem}; {versions}.")
print(f"Median of {runs} run(s), spread in brackets; peak memory is the median max RSS.")
print(f"Projects: load at {loads} models (`--days 30 --rows-per-day 10`); build100 `{b100}`; "
      f"build10m `{b10m}` (also the backfill's); build1k `{b1k}`; default batch sizes unless the row says batch 366.\n")
print("| case | tool | wall | peak memory | wall / hubforge | memory / hubforge |")
print("|---|---|---|---|---|---|")
def med(xs):
    return statistics.median(xs) if xs else None
for case, tools in results.items():
    base = None
    if "hubforge" in tools:
        ok = [(float(w), int(m)) for w, m in tools["hubforge"] if w != "FAIL"]
        if ok:
            base = (med([w for w, _ in ok]), med([m for _, m in ok]))
    for tool, xs in tools.items():
        ok = [(float(w), int(m)) for w, m in xs if w != "FAIL"]
        failed = len(xs) - len(ok)
        if not ok:
            print(f"| {case} | {tool} | failed | | | |")
            continue
        w = med([w for w, _ in ok]); m = med([m for _, m in ok])
        spread = f" ({min(x for x, _ in ok):.2f}–{max(x for x, _ in ok):.2f})" if len(ok) > 1 else ""
        note = f", {failed} failed" if failed else ""
        rw = f"{w / base[0]:.2f}×" if base and tool != "hubforge" and base[0] > 0 else ""
        rm = f"{m / base[1]:.2f}×" if base and tool != "hubforge" and base[1] > 0 else ""
        print(f"| {case} | {tool} | {w:.2f} s{spread}{note} | {m / 1024:.0f} MiB | {rw} | {rm} |")
text = open(rows).read().strip()
if text:
    print("\nSame rows in every tool (row count and sum(amount) per model):\n")
    for line in text.splitlines():
        print(f"    {line}")
EOF
cat "$OUT"
say "table written to $OUT"
