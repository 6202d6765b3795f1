"""python-hl7 (PyPI `hl7`) on the corpus written by `bench_corpus dump`: one message per
line, CR between segments. Prints messages/s for parse, and for parse + reading every
component (the closest equivalent of the Rust "full access" walk)."""
import sys
import time

import hl7


def walk(m):
    n = 0
    for seg in m:
        for field in seg:
            if isinstance(field, str):
                n += len(field)
                continue
            for rep in field:
                if isinstance(rep, str):
                    n += len(rep)
                    continue
                for comp in rep:
                    n += len(str(comp))
    return n


def main():
    path = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    # Bytes, split on LF only: segments inside a message are separated by CR.
    with open(path, "rb") as f:
        msgs = [line.decode("utf-8") for line in f.read().split(b"\n") if line.strip()]
    if limit:
        msgs = msgs[:limit]
    total = sum(len(m.encode("utf-8")) for m in msgs)
    t = time.perf_counter()
    for m in msgs:
        hl7.parse(m)
    parse_s = time.perf_counter() - t
    t = time.perf_counter()
    sink = 0
    for m in msgs:
        sink += walk(hl7.parse(m))
    full_s = time.perf_counter() - t
    n = len(msgs)
    print(f"python-hl7 {hl7.__version__ if hasattr(hl7, '__version__') else ''} parse: {n / parse_s:.0f} msgs/s, {total / 1e6 / parse_s:.1f} MB/s ({n} msgs)")
    print(f"python-hl7 parse + walk: {n / full_s:.0f} msgs/s")
    print(f"PY_MSGS_PER_S={n / parse_s:.0f}")
    print(f"PY_FULL_MSGS_PER_S={n / full_s:.0f}")


if __name__ == "__main__":
    main()
