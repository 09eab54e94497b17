#!/usr/bin/env bash
# Start, stop or query a local Spark Connect server for hubforge's Spark engine.
#
#   scripts/spark-connect.sh start    # create the venv once, start the server, wait until it answers
#   scripts/spark-connect.sh status   # exit 0 when the server answers a query, 1 otherwise
#   scripts/spark-connect.sh stop     # stop the server started by `start`
#
# Environment:
#   SPARK_CONNECT_PORT      gRPC port (default 15002)
#   HUBFORGE_SPARK_HOME     state dir: warehouse, metastore, logs, pid file
#                           (default $HOME/.cache/hubforge-spark)
#   HUBFORGE_SPARK_VENV     Python venv holding pyspark (default $HOME/.cache/hubforge-spark-venv)
#   SPARK_CONNECT_TIMEOUT   seconds to wait for the server to answer (default 120)
#   PYTHON                  interpreter used to create the venv (default python3)
#   SPARK_SHUFFLE_PARTITIONS  partitions of a shuffle (default 4: two cores, one
#                           machine; Spark's 200 makes every join and aggregation
#                           of a small table run 200 tasks)
#
# The pyspark wheel carries Spark's jars, the Spark Connect server among them, so
# nothing but Java 17+ and Python 3.9+ is needed. Any failure exits non-zero with a
# message (and the server log's tail when the server was started): never silently.
set -euo pipefail

PYSPARK_VERSION="4.1.4"
PORT="${SPARK_CONNECT_PORT:-15002}"
STATE_DIR="${HUBFORGE_SPARK_HOME:-$HOME/.cache/hubforge-spark}"
VENV="${HUBFORGE_SPARK_VENV:-$HOME/.cache/hubforge-spark-venv}"
TIMEOUT="${SPARK_CONNECT_TIMEOUT:-120}"
PYTHON="${PYTHON:-python3}"

PID_FILE="$STATE_DIR/spark-connect-$PORT.pid"
LOG_FILE="$STATE_DIR/logs/spark-connect-$PORT.log"
WAREHOUSE_DIR="$STATE_DIR/warehouse"
METASTORE_DIR="$STATE_DIR/metastore"

log() { printf 'spark-connect: %s\n' "$*" >&2; }
die() { printf 'spark-connect: error: %s\n' "$*" >&2; exit 1; }

log_tail() {
    if [ -f "$LOG_FILE" ]; then
        printf -- '--- last 40 lines of %s ---\n' "$LOG_FILE" >&2
        tail -n 40 "$LOG_FILE" >&2 || true
        printf -- '--- end of log ---\n' >&2
    fi
}

venv_python() { printf '%s/bin/python' "$VENV"; }

# The venv is reused when it already holds the pinned pyspark; otherwise it is
# (re)created and pyspark is installed into it.
ensure_venv() {
    local py
    py="$(venv_python)"
    if [ -x "$py" ] && [ "$("$py" -c 'import pyspark; print(pyspark.__version__)' 2>/dev/null || true)" = "$PYSPARK_VERSION" ]; then
        return 0
    fi
    command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found: Python 3.9+ is needed to install pyspark"
    log "creating venv $VENV with pyspark==$PYSPARK_VERSION (once; about 450 MB)"
    if [ ! -x "$py" ]; then
        "$PYTHON" -m venv "$VENV" || die "could not create the venv $VENV"
    fi
    # pyspark's Connect client needs pandas, pyarrow, grpcio, grpcio-status, googleapis-common-protos, zstandard.
    "$py" -m pip install --quiet --upgrade pip >&2 || die "pip upgrade failed in $VENV"
    "$py" -m pip install --quiet "pyspark[connect]==$PYSPARK_VERSION" >&2 \
        || die "could not install pyspark[connect]==$PYSPARK_VERSION into $VENV"
    "$py" -c 'import pyspark.sql.connect.session' \
        || die "pyspark installed in $VENV but its Connect client does not import"
}

spark_home() { "$(venv_python)" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }

check_java() {
    local java_bin version major
    if [ -n "${JAVA_HOME:-}" ]; then java_bin="$JAVA_HOME/bin/java"; else java_bin="$(command -v java || true)"; fi
    [ -n "$java_bin" ] && [ -x "$java_bin" ] || die "java not found (set JAVA_HOME or install a JDK 17+, e.g. apt-get install openjdk-17-jre-headless)"
    version="$("$java_bin" -version 2>&1 | head -n 1)"
    major="$(printf '%s' "$version" | sed -E 's/.*version "([0-9]+).*/\1/')"
    case "$major" in
        ''|*[!0-9]*) die "could not read the Java version from: $version" ;;
    esac
    [ "$major" -ge 17 ] || die "Spark 4 needs Java 17+, found: $version"
}

running_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    printf '%s' "$pid"
}

port_in_use() {
    "$PYTHON" - "$PORT" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}

# Exit 0 when a real query round-trips through the server, 1 otherwise.
answers() {
    local py
    py="$(venv_python)"
    [ -x "$py" ] || return 1
    # Bounded: the Connect client retries on its own for a long while.
    timeout 30 "$py" - "$PORT" <<'EOF' >/dev/null 2>&1
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.remote(f"sc://localhost:{sys.argv[1]}").getOrCreate()
assert spark.sql("select 1 as one").collect()[0].one == 1
EOF
}

cmd_start() {
    local pid sh started waited
    if pid="$(running_pid)"; then
        if answers; then
            log "already running (pid $pid) and answering on sc://localhost:$PORT"
            return 0
        fi
        die "a server is already running (pid $pid, $PID_FILE) but does not answer on port $PORT; run '$0 stop' first"
    fi
    check_java
    ensure_venv
    if port_in_use; then
        die "port $PORT is already in use by another process; set SPARK_CONNECT_PORT to another port"
    fi
    sh="$(spark_home)"
    [ -n "$(ls "$sh"/jars/spark-connect_*.jar 2>/dev/null)" ] \
        || die "no Spark Connect server jar in $sh/jars: pyspark $PYSPARK_VERSION does not ship it"
    mkdir -p "$STATE_DIR/logs" "$WAREHOUSE_DIR" "$METASTORE_DIR"
    : > "$LOG_FILE"
    log "starting Spark Connect $PYSPARK_VERSION on port $PORT (state in $STATE_DIR)"
    # spark-submit runs in a background subshell that execs down to the JVM, so $! is
    # the JVM's pid. The catalog is Hive's (an embedded Derby metastore under the state
    # dir), so databases and tables survive a restart of the server; tables default to
    # parquet (spark.sql.legacy.createHiveTableByDefault is false in Spark 4).
    (
        cd "$METASTORE_DIR"
        export SPARK_HOME="$sh"
        export SPARK_LOG_DIR="$STATE_DIR/logs"
        export PYSPARK_PYTHON="$(venv_python)"
        exec nohup "$sh/bin/spark-submit" \
            --class org.apache.spark.sql.connect.service.SparkConnectServer \
            --name "hubforge Spark Connect server" \
            --master "local[2]" \
            --conf "spark.connect.grpc.binding.port=$PORT" \
            --conf "spark.sql.warehouse.dir=$WAREHOUSE_DIR" \
            --conf "spark.sql.catalogImplementation=hive" \
            --conf "spark.driver.extraJavaOptions=-Dderby.system.home=$METASTORE_DIR" \
            --conf "spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName=$METASTORE_DIR/metastore_db;create=true" \
            --conf "spark.ui.enabled=false" \
            --conf "spark.sql.session.timeZone=UTC" \
            --conf "spark.sql.shuffle.partitions=${SPARK_SHUFFLE_PARTITIONS:-4}" \
            --driver-memory "${SPARK_DRIVER_MEMORY:-2g}" \
            spark-internal
    ) >>"$LOG_FILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$PID_FILE"

    started=$SECONDS
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log_tail
            die "the Spark Connect server exited during startup (see $LOG_FILE)"
        fi
        if answers; then
            log "ready after $((SECONDS - started))s: sc://localhost:$PORT (pid $pid, log $LOG_FILE)"
            return 0
        fi
        waited=$((SECONDS - started))
        if [ "$waited" -ge "$TIMEOUT" ]; then
            log_tail
            stop_pid "$pid"
            die "the Spark Connect server did not answer on port $PORT within ${TIMEOUT}s; stopped it"
        fi
        sleep 2
    done
}

# TERM the server and its children, then KILL whatever is left after 30 s.
stop_pid() {
    local pid="$1" i children
    children="$(pgrep -P "$pid" 2>/dev/null || true)"
    kill "$pid" $children 2>/dev/null || true
    for i in $(seq 1 30); do
        if ! kill -0 "$pid" 2>/dev/null && { [ -z "$children" ] || ! kill -0 $children 2>/dev/null; }; then
            rm -f "$PID_FILE"
            return 0
        fi
        sleep 1
    done
    log "server did not stop after 30 s; killing it"
    kill -9 "$pid" $children 2>/dev/null || true
    rm -f "$PID_FILE"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        log "not running (no live pid in $PID_FILE)"
        return 0
    fi
    log "stopping pid $pid"
    stop_pid "$pid"
    if port_in_use; then
        die "stopped pid $pid but port $PORT still answers: another server holds it"
    fi
    log "stopped"
}

cmd_status() {
    local pid
    if answers; then
        if pid="$(running_pid)"; then
            log "running (pid $pid), answering on sc://localhost:$PORT"
        else
            log "a server not started by this script answers on sc://localhost:$PORT"
        fi
        return 0
    fi
    if pid="$(running_pid)"; then
        log "pid $pid is alive but does not answer on sc://localhost:$PORT (starting, or broken: see $LOG_FILE)"
    else
        log "not running on port $PORT"
    fi
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) printf 'usage: %s start|stop|status\n' "$0" >&2; exit 2 ;;
esac
