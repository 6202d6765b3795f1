#!/usr/bin/env bash
# Reference peer for the Rust producer benchmark: Kafka's own ProducerPerformance (1 KiB records,
# acks=all, idempotent, unthrottled) against the local broker. Same as `stack.sh producer-perf`.
#   producer-perf.sh [num-records]      (default 500000; extra producer props: ARTERIA_PERF_PROPS)
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/stack.sh" producer-perf "$@"
