#!/usr/bin/env bash
# What validation (metrics before/after, thresholds, audits) adds to a
# 10-million-row backfill at default batch sizes: `build --backfill` against
# the same command with `--skip-validation`, alternating, in one run.
# See BENCHMARKS.md, "Validation on a 10-million-row backfill".
#
#   bench/validation.sh              # 3 runs of each
#   VALIDATION_RUNS=5 bench/validation.sh
#   HUBFORGE_BIN=dir                 # directory of hubforge and hubforge-bench
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${VALIDATION_RUNS:-3}
P=${VALIDATION_DIR:-/tmp/hubforge-validation}
if [[ -z ${HUBFORGE_BIN:-} ]]; then
    (cd "$REPO" && cargo build --bins -q)
    B=${CARGO_TARGET_DIR:-$REPO/target}/debug
else
    B=$HUBFORGE_BIN
fi
rm -rf "$P"
"$B/hubforge-bench" generate --models 20 --sources 10 --days 365 --rows-per-day 2740 --out "$P" >/dev/null
# Two audits per model on its grain: not_null of the first column, unique of all.
python3 - "$P" <<'PY'
import pathlib, re, sys
for f in pathlib.Path(sys.argv[1], "models").rglob("*.sql"):
    t = f.read_text()
    g = re.search(r'grain = \[(.*?)\]', t)
    if g:
        cols = [c.strip().strip('"') for c in g.group(1).split(",") if c.strip()]
        audits = [f"not_null({cols[0]})", f"unique({', '.join(cols)})"]
        t = t.replace("*/", "audits = [" + ", ".join(f'"{a}"' for a in audits) + "]\n*/", 1)
    f.write_text(t)
PY
"$B/hubforge" --project "$P" build >/dev/null
for _ in $(seq "$RUNS"); do
    /usr/bin/time -f "build --backfill: %e s, %M KB" \
        "$B/hubforge" --project "$P" build --backfill >/dev/null 2>"$P/err" || { cat "$P/err"; exit 1; }
    tail -1 "$P/err"
    /usr/bin/time -f "build --backfill --skip-validation: %e s, %M KB" \
        "$B/hubforge" --project "$P" build --backfill --skip-validation >/dev/null 2>"$P/err" || { cat "$P/err"; exit 1; }
    tail -1 "$P/err"
done
