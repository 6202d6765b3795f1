#!/usr/bin/env bash
# One load run on a wiped stack, for A/B comparisons of builds: everything is stopped, the
# stack's state wiped (Kafka, registry, the query store), the stack and the pipeline started
# from the given binaries, warmed up with 30 s at the rate, then loaded for the given seconds.
# Besides arteria-load's report it prints the bytes the query service caused to be written
# (/proc/<pid>/io write_bytes, the store's WAL and checkpoints) and the broker's GC pauses
# during the measured run.
#
#   tests/bench/fresh-run.sh LABEL [seconds] [rate]     (defaults 90 s, 1000 messages/s)
#
# ARTERIA_BIN_DIR picks the binaries (default target/release; build them first), and any other
# ARTERIA_* variable reaches the services (e.g. ARTERIA_STAGE_NICE,
# ARTERIA__BUS__TRANSACTIONS__MAX_TXN_MS). The report goes to target/bench-pipeline/LABEL.json.
# Destroys the local stack's data: not for a stack in use.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
LABEL="${1:?usage: tests/bench/fresh-run.sh LABEL [seconds] [rate]}"
SECS="${2:-90}"
RATE="${3:-1000}"
LOAD=target/release/arteria-load
[[ -x "$LOAD" ]] || { echo "build it first: cargo build --release -p arteria-load" >&2; exit 1; }
mkdir -p target/bench-pipeline

bash deploy/local/pipeline.sh down >/dev/null 2>&1 || true
bash deploy/local/stack.sh down >/dev/null
bash deploy/local/stack.sh wipe >/dev/null
bash deploy/local/stack.sh up >/dev/null
ARTERIA_SKIP_BUILD=1 bash deploy/local/pipeline.sh up >/dev/null
"$LOAD" --rate "$RATE" --duration 30 --drain-timeout 300 --label "$LABEL-warm-up" >/dev/null

query_pid="$(cat .state/run/query.pid)"
written() { awk '/^write_bytes/ {print $2}' "/proc/$query_pid/io"; }
gc_log=.state/logs/kafka/gc.log
before_bytes="$(written)"
before_gc="$(wc -l <"$gc_log")"
"$LOAD" --rate "$RATE" --duration "$SECS" --drain-timeout 600 --label "$LABEL" \
    --json "target/bench-pipeline/$LABEL.json"
after_bytes="$(written)"
pauses="$(tail -n +"$((before_gc + 1))" "$gc_log" | grep -c Pause || true)"
echo "query service wrote $(((after_bytes - before_bytes) / 1048576)) MiB during the run; broker GC pauses: $pauses"
