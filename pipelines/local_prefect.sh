#!/usr/bin/env bash
# Local Prefect for the asn-ablation deployments: `start` runs a Prefect server on 127.0.0.1
# (sqlite in $PREFECT_HOME), waits until it answers, creates the process work pool, deploys
# prefect.yaml (`prefect deploy --all`) and starts a worker; `stop` ends what `start` started;
# `status` says what runs. Everything runs in the background, each in its own session (so `stop`
# can end a process with all of its children), with logs in $PREFECT_HOME/logs and PIDs in
# $PREFECT_HOME/pids. `make prefect` / `make prefect-stop` call this from the project root.
#
# Settings (environment, with the Makefile's defaults): PREFECT_HOME (.prefect), PREFECT_PORT
# (4200), ASN_PREFECT_POOL (asn-local, as in prefect.yaml), ASN_PREFECT_WORKER_LIMIT (1: flow
# runs at once; a sweep already keeps the machine busy), PREFECT (the prefect executable),
# PYTHON (for the health check), ASN_PREFECT_START_TIMEOUT (120 s).
set -euo pipefail

cd "$(dirname "$0")/.."
: "${PREFECT_HOME:=$PWD/.prefect}"
: "${PREFECT_PORT:=4200}"
: "${ASN_PREFECT_POOL:=asn-local}"
: "${ASN_PREFECT_WORKER_LIMIT:=1}"
: "${ASN_PREFECT_START_TIMEOUT:=120}"
: "${PREFECT:=.venv/bin/prefect}"
: "${PYTHON:=.venv/bin/python}"
export PREFECT_HOME
export PREFECT_API_URL="http://127.0.0.1:${PREFECT_PORT}/api"
# offline and quiet: no analytics, no telemetry, never an interactive prompt
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 PREFECT_CLI_PROMPT=false
export MLFLOW_DISABLE_TELEMETRY=true
LOGS="$PREFECT_HOME/logs"
PIDS="$PREFECT_HOME/pids"

alive() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

healthy() {
    "$PYTHON" - "$PREFECT_API_URL/health" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
}

# `setsid` makes the process a session and group leader (pid = pgid) unless it already leads a
# group; `exec` keeps that pid, so the pid file names the whole group.
launch() {  # name, command...
    local name=$1; shift
    setsid bash -c 'exec "$@"' _ "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
}

descendants() {  # every process below pid $1 (children first found, recursively)
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

stop_one() {  # name
    local name=$1 pid pids
    [ -f "$PIDS/$name.pid" ] || return 0
    pid=$(cat "$PIDS/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        # the worker's flow runs start their own sessions: collect them before the worker goes
        pids="$pid $(descendants "$pid" | tr '\n' ' ')"
        kill -TERM -- "-$pid" 2>/dev/null || true
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 1 40); do
            local left=""
            for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
            [ -n "$left" ] || break
            sleep 0.5
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        kill -KILL $pids 2>/dev/null || true
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$PIDS/$name.pid"
}

start() {
    mkdir -p "$LOGS" "$PIDS"
    if alive server; then
        echo "a Prefect server of this project runs already (pid $(cat "$PIDS/server.pid")); make prefect-stop first" >&2
        exit 1
    fi
    if healthy; then
        echo "something already answers on $PREFECT_API_URL; choose another port: make prefect PREFECT_PORT=4201" >&2
        exit 1
    fi
    launch server "$PREFECT" server start --host 127.0.0.1 --port "$PREFECT_PORT" --analytics-off
    printf 'waiting for the Prefect server on %s ' "$PREFECT_API_URL"
    local waited=0
    until healthy; do
        if ! alive server; then
            echo; echo "the Prefect server exited; the end of $LOGS/server.log:" >&2
            tail -n 30 "$LOGS/server.log" >&2
            stop_one server; exit 1
        fi
        if [ "$waited" -ge "$ASN_PREFECT_START_TIMEOUT" ]; then
            echo; echo "no answer after ${ASN_PREFECT_START_TIMEOUT} s; see $LOGS/server.log" >&2
            stop_one server; exit 1
        fi
        sleep 1; waited=$((waited + 1)); printf .
    done
    echo " up after ${waited} s"
    if ! "$PREFECT" work-pool inspect "$ASN_PREFECT_POOL" >/dev/null 2>&1; then
        "$PREFECT" work-pool create "$ASN_PREFECT_POOL" --type process >"$LOGS/pool.log" 2>&1 \
            || { cat "$LOGS/pool.log" >&2; stop_one server; exit 1; }
    fi
    echo "deploying prefect.yaml (log: $LOGS/deploy.log)"
    if ! "$PREFECT" --no-prompt deploy --all >"$LOGS/deploy.log" 2>&1; then
        echo "prefect deploy failed; the end of $LOGS/deploy.log:" >&2
        tail -n 30 "$LOGS/deploy.log" >&2
        stop_one server; exit 1
    fi
    launch worker "$PREFECT" worker start --pool "$ASN_PREFECT_POOL" --type process \
        --limit "$ASN_PREFECT_WORKER_LIMIT" --name "asn-local-worker" --install-policy never
    sleep 2
    if ! alive worker; then
        echo "the worker exited; the end of $LOGS/worker.log:" >&2
        tail -n 30 "$LOGS/worker.log" >&2
        stop_one server; exit 1
    fi
    cat <<EOF
Prefect is up: server pid $(cat "$PIDS/server.pid"), worker pid $(cat "$PIDS/worker.pid") (pool $ASN_PREFECT_POOL)
  UI and API:  http://127.0.0.1:$PREFECT_PORT   (logs: $LOGS/)
  Run a sweep: export PREFECT_API_URL=$PREFECT_API_URL
               .venv/bin/prefect deployment run 'asn-ablation/table6' --param seeds='[0,1]'
               (deployments: table4 table5 table6 table7 inference_order custom; add --watch to wait for it)
  Stop:        make prefect-stop
EOF
}

status() {
    local name
    for name in server worker; do
        if alive "$name"; then echo "$name: running (pid $(cat "$PIDS/$name.pid"))"; else echo "$name: not running"; fi
    done
    if healthy; then echo "API: $PREFECT_API_URL answers"; else echo "API: $PREFECT_API_URL does not answer"; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop_one worker; stop_one server ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
