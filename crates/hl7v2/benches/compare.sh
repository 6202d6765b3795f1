#!/usr/bin/env bash
# Runs the Rust parser and python-hl7 (PyPI `hl7`) on the same generated corpus, in the same
# run, on one core each (sequentially), and prints messages/s and the ratio.
#   crates/hl7v2/benches/compare.sh [COUNT] [PY_COUNT]
# python-hl7 needs ~7 ms per 2 KB message here, so by default it parses the first 10,000
# messages of the same corpus (PY_COUNT=0 for all of them); rates are per message either way.
set -euo pipefail
cd "$(dirname "$0")/../../.."
COUNT="${1:-50000}"
PY_COUNT="${2:-10000}"
OUT="${CARGO_TARGET_DIR:-target}/hl7v2-bench"
mkdir -p "$OUT"
cargo build --release -q -p hl7v2 --example bench_corpus
BIN="${CARGO_TARGET_DIR:-target}/release/examples/bench_corpus"
"$BIN" dump "$OUT/corpus.hl7" "$COUNT"
if [ ! -x "$OUT/venv/bin/python" ]; then
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q hl7
fi
echo "--- rust (taskset core 0 when available)"
RUST=$( (command -v taskset >/dev/null && taskset -c 0 "$BIN" run "$OUT/corpus.hl7" 5) || "$BIN" run "$OUT/corpus.hl7" 5)
echo "$RUST" | grep -v '=' || true
echo "--- python-hl7 $("$OUT/venv/bin/pip" show hl7 2>/dev/null | awk '/^Version/{print $2}')"
PY=$( (command -v taskset >/dev/null && taskset -c 0 "$OUT/venv/bin/python" crates/hl7v2/benches/peer/python_hl7.py "$OUT/corpus.hl7" "$PY_COUNT") || "$OUT/venv/bin/python" crates/hl7v2/benches/peer/python_hl7.py "$OUT/corpus.hl7" "$PY_COUNT")
echo "$PY" | grep -v '=' || true
R=$(echo "$RUST" | sed -n 's/^RUST_MSGS_PER_S=//p')
RF=$(echo "$RUST" | sed -n 's/^RUST_FULL_MSGS_PER_S=//p')
P=$(echo "$PY" | sed -n 's/^PY_MSGS_PER_S=//p')
PF=$(echo "$PY" | sed -n 's/^PY_FULL_MSGS_PER_S=//p')
echo "--- ratio: parse ${R}/${P} = $(( R / P ))x; full access ${RF}/${PF} = $(( RF / PF ))x"
