#!/usr/bin/env bash
# Runs the Rust parser and python-hl7 (PyPI `hl7`) on the same generated corpus, in the same
# run, on one core each (sequentially), and prints messages/s and the ratio.
#   crates/hl7v2/benches/compare.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/../../.."
COUNT="${1:-50000}"
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
PY=$( (command -v taskset >/dev/null && taskset -c 0 "$OUT/venv/bin/python" crates/hl7v2/benches/peer/python_hl7.py "$OUT/corpus.hl7") || "$OUT/venv/bin/python" crates/hl7v2/benches/peer/python_hl7.py "$OUT/corpus.hl7")
echo "$PY" | grep -v '=' || true
R=$(echo "$RUST" | sed -n 's/^RUST_MSGS_PER_S=//p')
RF=$(echo "$RUST" | sed -n 's/^RUST_FULL_MSGS_PER_S=//p')
P=$(echo "$PY" | sed -n 's/^PY_MSGS_PER_S=//p')
PF=$(echo "$PY" | sed -n 's/^PY_FULL_MSGS_PER_S=//p')
echo "--- ratio: parse ${R}/${P} = $(( R / P ))x; full access ${RF}/${PF} = $(( RF / PF ))x"
