#!/usr/bin/env bash
# The Arteria services on loopback, over the local stack (stack.sh): builds the release
# binaries, starts each service with its state under .state/, waits until every one answers
# /readyz, and stops them in reverse order. Used by `make up` / `make down`.
#
#   pipeline.sh up | down | status | demo
#
# `demo` sends examples/*.hl7 through MLLP and prints how to look at the result.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
STATE="$(realpath -m -- "${ARTERIA_STATE_DIR:-$REPO_ROOT/.state}")"
RUN="$STATE/run"
LOGS="$STATE/logs"
BIN="${ARTERIA_BIN_DIR:-$REPO_ROOT/target/release}"
START_TIMEOUT="${ARTERIA_START_TIMEOUT:-180}"
# The stages behind ingest run at a lower CPU priority: everything shares a few cores here, and
# the sender waits on ingest and the broker for its ACK while the stages only have to keep up
# (on Kubernetes, CPU requests do this). 0 runs them like ingest.
STAGE_NICE="${ARTERIA_STAGE_NICE:-5}"
STOP_TIMEOUT="${ARTERIA_STOP_TIMEOUT:-30}"

# name:health-port, in start order (downstream first, so nothing waits on a missing consumer).
SERVICES=(query:9105 fanout:9104 enrich:9103 normalize:9102 ingest:9101)

say() { printf '[pipeline] %s\n' "$*" >&2; }
die() { printf '[pipeline] ERROR: %s\n' "$*" >&2; exit 1; }

present() { [ -x "$BIN/$1" ]; }
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
running() { local p; p="$(pid_of "$1")"; [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
ready() { curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; }

build() {
    command -v cargo >/dev/null || die "cargo (Rust 1.95) is required"
    say "building release binaries (first build takes several minutes on 2 cores)"
    (cd "$REPO_ROOT" && cargo build --release --locked -q \
        -p arteria-cli -p arteria-ingest -p arteria-normalize -p arteria-enrich -p arteria-fanout \
        $(grep -q '"services/query"' Cargo.toml && echo -p arteria-query))
}

start_one() {
    local name="$1" port="$2"
    if running "$name"; then say "$name already running (pid $(pid_of "$name"))"; return; fi
    if ! present "$name"; then say "$name: no binary at $BIN/$name, skipped"; return; fi
    if ss -ltn "sport = :$port" 2>/dev/null | grep -q LISTEN; then
        die "port 127.0.0.1:$port ($name health) is taken by another process"
    fi
    mkdir -p "$RUN" "$LOGS"
    # From the repository root, so relative state paths (the query store) land under .state/.
    # `exec` so the recorded pid is the service itself, not a wrapping shell.
    local nice=0
    [ "$name" = ingest ] || nice="$STAGE_NICE"
    ( cd "$REPO_ROOT" && ARTERIA__TELEMETRY__LOG_FORMAT="${ARTERIA_LOG_FORMAT:-json}" \
        exec nohup nice -n "$nice" "$BIN/$name" >"$LOGS/$name.log" 2>&1 ) &
    echo $! >"$RUN/$name.pid"
    local deadline=$(( $(date +%s) + START_TIMEOUT ))
    until ready "$port"; do
        if ! running "$name"; then
            tail -n 20 "$LOGS/$name.log" >&2 || true
            die "$name exited during start-up (log: $LOGS/$name.log)"
        fi
        [ "$(date +%s)" -lt "$deadline" ] || die "$name not ready after ${START_TIMEOUT}s (log: $LOGS/$name.log)"
        sleep 0.5
    done
    say "$name ready (pid $(pid_of "$name"), health http://127.0.0.1:$port/readyz)"
}

stop_one() {
    local name="$1" p
    p="$(pid_of "$name")"
    if [ -z "$p" ] || ! kill -0 "$p" 2>/dev/null; then rm -f "$RUN/$name.pid"; return; fi
    kill -TERM "$p"
    local deadline=$(( $(date +%s) + STOP_TIMEOUT ))
    while kill -0 "$p" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then say "$name did not stop in ${STOP_TIMEOUT}s: SIGKILL"; kill -KILL "$p" 2>/dev/null || true; break; fi
        sleep 0.2
    done
    rm -f "$RUN/$name.pid"
    say "$name stopped"
}

cmd_up() {
    "$HERE/stack.sh" status >/dev/null 2>&1 || die "the local stack is not running: deploy/local/stack.sh up"
    [ "${ARTERIA_SKIP_BUILD:-0}" = 1 ] || build
    eval "$("$HERE/stack.sh" env)"
    export ARTERIA_KAFKA_BOOTSTRAP ARTERIA_REGISTRY_URL
    for s in "${SERVICES[@]}"; do start_one "${s%%:*}" "${s##*:}"; done
}

cmd_down() {
    # Stop intake first, then downstream, so in-flight messages drain forward.
    for name in ingest normalize enrich fanout query; do stop_one "$name"; done
}

cmd_status() {
    local ok=0
    for s in "${SERVICES[@]}"; do
        local name="${s%%:*}" port="${s##*:}"
        if running "$name" && ready "$port"; then echo "$name: ready (pid $(pid_of "$name"))"
        elif running "$name"; then echo "$name: running, not ready"; ok=1
        else echo "$name: stopped"; ok=1; fi
    done
    return $ok
}

cmd_demo() {
    say "sending examples/*.hl7 to the MLLP listener on 127.0.0.1:2575"
    "$BIN/arteria" send --to 127.0.0.1:2575 "$REPO_ROOT"/examples/*.hl7
    say "and one malformed message (expect AR, and its bytes in ingest.dlq.v1):"
    "$BIN/arteria" send --to 127.0.0.1:2575 "$REPO_ROOT"/examples/malformed/*.hl7 || true
    cat <<MSG

Arteria is up. Try:
  target/release/arteria query patient --identifier NW-100234
  target/release/arteria query observations --patient-identifier NW-100234 --code 2345-7
  target/release/arteria convert --enrich examples/oru-r01-chemistry.hl7
  curl -s '127.0.0.1:8088/fhir/Observation?patient.identifier=NW-100234&code=2345-7'   # FHIR REST
  curl -s 127.0.0.1:9101/metrics                  # ingest metrics (9102 normalize … 9105 query)
  deploy/local/stack.sh kafka-tool org.apache.kafka.tools.ConsumerPerformance --help
Logs: $LOGS/<service>.log   Stop everything: make down
MSG
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    demo) cmd_demo ;;
    *) echo "usage: $0 up | down | status | demo" >&2; exit 2 ;;
esac
