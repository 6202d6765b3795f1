"""Peer baseline for the terminology lookup benchmark: a Python dict of the same 100,000
synthetic LOINC codes (same generator and probe order as benches/terminology.rs), timing a
lookup plus reading the display's length, on one core.

Run: python3 crates/terminology/benches/dict_baseline.py
"""
import sys
import timeit


def check_digit(num: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(num)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d // 10 + d % 10
        total += d
    return (10 - total % 10) % 10


codes = [f"{n}-{check_digit(str(n))}" for n in (10_000 + i * 7 for i in range(100_000))]
table = {c: (i, f"Analyte {i} [Mass/volume] in Serum or Plasma") for i, c in enumerate(codes)}
probe = [codes[(i * 7919) % len(codes)] for i in range(1000)]


def run() -> None:
    for c in probe:
        len(table[c][1])


N = 2000
best = min(timeit.repeat(run, number=N, repeat=5))
print(f"python {sys.version.split()[0]} dict lookup + display length: {1000 * N / best / 1e6:.2f} M lookups/s")
