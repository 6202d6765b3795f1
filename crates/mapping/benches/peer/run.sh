#!/usr/bin/env bash
# Runs the peer benchmark: LinuxForHealth hl7v2-fhir-converter on the same messages as
# `cargo bench -p mapping --bench convert`. Fetches its class path from Maven Central once.
#   crates/mapping/benches/peer/run.sh [SECONDS]      (default 10 s warm-up + 10 s measured)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${ARTERIA_CACHE_DIR:-$HOME/.cache/arteria}/lfh-peer"
if [ ! -f "$cache/.complete" ]; then
  mkdir -p "$cache/libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$cache/libs" >&2
  touch "$cache/.complete"
fi
secs="${1:-10}"
# One core, like the Rust benchmark run with the same taskset.
exec taskset -c "${BENCH_CPU:-1}" java -XX:ActiveProcessorCount=1 -Xmx1g -cp "$cache/libs/*" "$here/PeerBench.java" "$secs" \
  "$here/../data/oru_r01_10obx.hl7" "$here/../data/adt_a01.hl7"
