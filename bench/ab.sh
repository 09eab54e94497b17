#!/usr/bin/env bash
# Two hubforge binaries taking turns on first builds of one project, each on a
# new warehouse: wall time and peak memory of every run (before/after a change).
#
#   bench/ab.sh OLD_BINARY NEW_BINARY PROJECT_DIR [RUNS]
set -euo pipefail
old=$1 new=$2 project=$3 runs=${4:-3}
for _ in $(seq "$runs"); do
  for side in old new; do
    bin=$old
    [ "$side" = new ] && bin=$new
    rm -rf "$project"/warehouse.duckdb* "$project"/target
    ( cd "$project" && /usr/bin/time -f "$side %e s %M KB" "$bin" -q build >/dev/null 2>"$project/.ab_err" ) || true
    tail -1 "$project/.ab_err"
    rm -f "$project/.ab_err"
  done
done
