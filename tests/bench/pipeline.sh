#!/usr/bin/env bash
# Pipeline end-to-end benchmark: the five services over the local stack, loaded over MLLP by
# tests/load (arteria-load), with the peers measured in the same run:
#   - Kafka's own ProducerPerformance against the same broker, records of the harness's mean
#     message size, acks=all, idempotent, with ingest's producer settings: at 1,000 records/s
#     (the broker's own acknowledgement latency, the floor under our ACK) and unthrottled (the
#     broker's ceiling on this machine);
#   - when tests/bench/peer-hapi is buildable (Maven + Java 17), a HAPI HL7v2 MLLP listener that
#     ACKs without persisting, driven by the same harness (ARTERIA_BENCH_HAPI=0 skips it).
#
#   tests/bench/pipeline.sh [seconds]        (default 60 per run; the stack must be up: make up-stack)
#
# Runs: (a) 1,000 messages/s open loop, (b) maximum (back to back on every connection), each
# for the given seconds, then waits until everything is queryable. The pipeline is restarted
# from this build at the start and stopped at the end. JSON reports go to target/bench-pipeline/.
# (b) runs last, after the peers, because the backlog it leaves must drain before anything else
# is measured: it is waited for (at most ARTERIA_BENCH_MAX_DRAIN seconds, 900), and the
# end-to-end throughput is all accepted messages over the time until the last one is queryable
# (if the wait ends first: the share stored over the time waited).
# (a) waits at most ARTERIA_BENCH_DRAIN seconds (600) for everything to be queryable.
# Knobs: ARTERIA_BENCH_RATE (1000), ARTERIA_BENCH_CONNS (32), ARTERIA_BENCH_MAX_CONNS (64),
# ARTERIA_BENCH_ORU_SHARE (0.5), ARTERIA_SKIP_BUILD=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
SECS="${1:-60}"
RATE="${ARTERIA_BENCH_RATE:-1000}"
CONNS="${ARTERIA_BENCH_CONNS:-32}"
MAX_CONNS="${ARTERIA_BENCH_MAX_CONNS:-64}"
ORU_SHARE="${ARTERIA_BENCH_ORU_SHARE:-0.5}"
STACK=deploy/local/stack.sh
PIPELINE=deploy/local/pipeline.sh
OUT=target/bench-pipeline
STATE="$(realpath -m -- "${ARTERIA_STATE_DIR:-$ROOT/.state}")"
LOAD=target/release/arteria-load
HAPI_PORT="${ARTERIA_BENCH_HAPI_PORT:-2576}"
mkdir -p "$OUT"

say() { printf '[bench] %s\n' "$*" >&2; }
machine() { echo "# $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); busiest processes:"; top -bn1 -o %CPU | sed -n '8,13p' | awk '{printf "#   %s %s%% %s\n", $1, $9, $12}'; }

bash "$STACK" status >/dev/null || { echo "the local stack is not up: run make up-stack (deploy/local/stack.sh up)" >&2; exit 1; }
for port in 2575 8080 8088 50051 9101 9102 9103 9104 9105; do
    if ss -ltn "sport = :$port" | grep -q LISTEN && ! bash "$PIPELINE" status >/dev/null 2>&1; then
        echo "port $port is taken by a process that is not this pipeline" >&2; exit 1
    fi
done

if [ "${ARTERIA_SKIP_BUILD:-0}" != 1 ]; then
    say "building release binaries"
    cargo build --release --locked -q -p arteria-cli -p arteria-ingest -p arteria-normalize -p arteria-enrich \
        -p arteria-fanout -p arteria-query -p arteria-load
fi

HAPI_PID=""
cleanup() {
    [ -n "$HAPI_PID" ] && kill "$HAPI_PID" 2>/dev/null || true
    bash "$PIPELINE" down || true
}
trap cleanup EXIT
bash "$PIPELINE" down
ARTERIA_SKIP_BUILD=1 bash "$PIPELINE" up
sleep 5 # let the consumer groups settle before the first measurement

# Sizes of the harness's messages (mean over the mix), for the Kafka peer's record size.
SIZE="$("$LOAD" --print-mean-size --oru-share "$ORU_SHARE")"
BOOT=127.0.0.1:9092
PROPS=(bootstrap.servers=$BOOT acks=all enable.idempotence=true linger.ms=5 batch.size=1048576 compression.type=lz4)
kafka_peer() { # records throughput label
    local topic="arteria.bench.pipeline.$(date +%s%N)"
    bash "$STACK" kafka-tool org.apache.kafka.tools.TopicCommand --bootstrap-server $BOOT --create --topic "$topic" \
        --partitions 6 --replication-factor 1 >/dev/null
    echo "## peer: Kafka ProducerPerformance, $3: $1 records of $SIZE bytes, --throughput $2, ${PROPS[*]:1}"
    bash "$STACK" kafka-tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$1" \
        --record-size "$SIZE" --throughput "$2" --producer-props "${PROPS[@]}" 2>/dev/null | tail -n 1
    bash "$STACK" kafka-tool org.apache.kafka.tools.TopicCommand --bootstrap-server $BOOT --delete --topic "$topic" \
        >/dev/null 2>&1 || true
}

REV="${ARTERIA_BENCH_REV:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates services tests/load 2>/dev/null || echo ' +local changes')}"
echo "# Arteria pipeline end to end; commit $REV"
machine
kafka_peer $((RATE * SECS)) "$RATE" "at $RATE/s"
echo "## (a) Arteria at $RATE messages/s for $SECS s"
"$LOAD" --pid-dir "$STATE/run" --label "rate-$RATE" --rate "$RATE" --duration "$SECS" --connections "$CONNS" --oru-share "$ORU_SHARE" \
    --drain-timeout "${ARTERIA_BENCH_DRAIN:-600}" --json "$OUT/rate.json"
machine
kafka_peer 600000 -1 "unthrottled"

if [ "${ARTERIA_BENCH_HAPI:-1}" = 1 ] && command -v mvn >/dev/null && [ -f tests/bench/peer-hapi/pom.xml ]; then
    say "building the HAPI peer"
    (cd tests/bench/peer-hapi && mvn -q -B package dependency:copy-dependencies -DincludeScope=runtime >&2)
    # From $OUT: HAPI writes its control-id counter (id_file) into the working directory.
    (cd "$OUT" && exec java -cp "$ROOT/tests/bench/peer-hapi/target/classes:$ROOT/tests/bench/peer-hapi/target/dependency/*" \
        arteria.bench.HapiAckListener "$HAPI_PORT" >hapi.log 2>&1) &
    HAPI_PID=$!
    for _ in $(seq 100); do ss -ltn "sport = :$HAPI_PORT" | grep -q LISTEN && break; sleep 0.2; done
    # JIT warm-up, not reported (the pipeline's warm-up is the harness's calibration messages).
    "$LOAD" --label hapi-warm-up --mllp "127.0.0.1:$HAPI_PORT" --query-metrics "" --stage-metrics "" --processes "" \
        --rate "$RATE" --duration 10 --connections "$CONNS" >/dev/null
    echo "## peer: HAPI HL7v2 $(sed -n 's:.*<hapi.version>\(.*\)</hapi.version>.*:\1:p' tests/bench/peer-hapi/pom.xml) MLLP listener (ACK without persisting), same harness"
    "$LOAD" --label "hapi-rate-$RATE" --mllp "127.0.0.1:$HAPI_PORT" --query-metrics "" --stage-metrics "" --processes "" \
        --process "hapi=$HAPI_PID" --rate "$RATE" --duration "$SECS" --connections "$CONNS" --oru-share "$ORU_SHARE" \
        --json "$OUT/hapi-rate.json"
    "$LOAD" --label hapi-max --mllp "127.0.0.1:$HAPI_PORT" --query-metrics "" --stage-metrics "" --processes "" \
        --process "hapi=$HAPI_PID" --rate 0 --duration "$SECS" --connections "$MAX_CONNS" --oru-share "$ORU_SHARE" \
        --json "$OUT/hapi-max.json"
    kill "$HAPI_PID"; HAPI_PID=""
else
    say "HAPI peer skipped (ARTERIA_BENCH_HAPI=0, or no mvn / tests/bench/peer-hapi)"
fi
echo "## (b) Arteria at the maximum for $SECS s"
"$LOAD" --pid-dir "$STATE/run" --label max --rate 0 --duration "$SECS" --connections "$MAX_CONNS" --oru-share "$ORU_SHARE" \
    --drain-timeout "${ARTERIA_BENCH_MAX_DRAIN:-900}" --json "$OUT/max.json"
machine
