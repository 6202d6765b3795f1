#!/usr/bin/env bash
# Kafka backbone benchmark: the bus's producer and transactional loop (tests/src/bin/bus-bench.rs)
# and, in the same run against the same local broker, Kafka's own ProducerPerformance as the peer,
# with the same producer settings (acks=all, idempotent, linger.ms, batch.size, compression).
#   tests/bench/bus.sh [records]        (default 200000; the stack must be up: make up-stack)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
N="${1:-200000}"
STACK=deploy/local/stack.sh
bash "$STACK" status >/dev/null || { echo "the local stack is not up: run make up-stack (deploy/local/stack.sh up)" >&2; exit 1; }
cargo build --release -q -p arteria-tests --bin bus-bench
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -srm), load average $(cut -d" " -f1-3 /proc/loadavg)"
echo "## peer: Kafka ProducerPerformance (same producer settings as BusProducer's defaults)"
ARTERIA_PERF_PROPS="linger.ms=5 batch.size=1048576 compression.type=lz4" bash "$STACK" producer-perf "$N" 2>/dev/null
echo "## bus-bench"
target/release/bus-bench --records "$N"
echo "## peer again (brackets the run against drift)"
ARTERIA_PERF_PROPS="linger.ms=5 batch.size=1048576 compression.type=lz4" bash "$STACK" producer-perf "$N" 2>/dev/null
