#!/usr/bin/env python3
"""Where the query store's disk writes go: the store's tables and keys in plain SQLite, with its
pragmas (WAL, synchronous=NORMAL, checkpoint every 10,000 pages, 8 MiB page cache), loaded
with observations for random patients, 16 per patient, in transactions of 320 rows.

    python3 crates/query/benches/key_locality.py random     # ids as the pipeline made them before their time lead
    python3 crates/query/benches/key_locality.py no-key     # without the (resource_type, id) key
    python3 crates/query/benches/key_locality.py in-time    # that key on ids growing in time
    python3 crates/query/benches/key_locality.py codes-in-index  # in-time, and the codes in the
                                                            # patient index instead of a code table

Prints rows/s, CPU per row and the bytes the process caused to be written per row
(/proc/self/io write_bytes: WAL frames and checkpoint copies, in the kernel's 4 KiB pages),
measured after PRELOAD rows are in and checkpointed. Linux only; scratch files under /tmp.
"""

import json
import os
import random
import sqlite3
import sys
import time
import uuid

PRELOAD = 1_000_000
MEASURED = 200_000
PER_TXN = 320
PER_PATIENT = 16

SCHEMA = """
CREATE TABLE resources (resource_type TEXT NOT NULL, id TEXT NOT NULL, tenant TEXT NOT NULL,
  patient_id TEXT, occurred_at INTEGER NOT NULL, source_event_id TEXT NOT NULL,
  event_type TEXT NOT NULL, json TEXT NOT NULL, last_updated TEXT NOT NULL,
  effective INTEGER NOT NULL, birth_date TEXT, index_key TEXT{key});
CREATE INDEX resources_of_patient ON resources (patient_id, resource_type, effective, id);
CREATE TABLE codes (resource_type TEXT NOT NULL, patient_id TEXT NOT NULL, id TEXT NOT NULL,
  system TEXT NOT NULL, code TEXT NOT NULL,
  PRIMARY KEY (patient_id, resource_type, id, system, code)) WITHOUT ROWID;
"""

# The store since the codes moved into the patient index (one text per resource).
SCHEMA_CODES_IN_INDEX = """
CREATE TABLE resources (resource_type TEXT NOT NULL, id TEXT NOT NULL, tenant TEXT NOT NULL,
  patient_id TEXT, occurred_at INTEGER NOT NULL, source_event_id TEXT NOT NULL,
  event_type TEXT NOT NULL, json TEXT NOT NULL, last_updated TEXT NOT NULL,
  effective INTEGER NOT NULL, birth_date TEXT, index_key TEXT, codes TEXT,
  PRIMARY KEY (resource_type, id));
CREATE INDEX resources_of_patient ON resources (patient_id, resource_type, effective, id, codes);
"""

OBSERVATION = json.dumps({
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7",
                         "display": "Glucose [Mass/volume] in Serum or Plasma"}]},
    "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                      "code": "mmol/L"},
    "effectiveDateTime": "2024-03-01T08:00:00+01:00", "subject": {"reference": "Patient/x"},
    "meta": {"source": "urn:x", "tag": [{"system": "urn:arteria:tenant", "code": "t"}]},
})


def written_bytes():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/self/io")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "random"
    if mode not in ("random", "no-key", "in-time", "codes-in-index"):
        sys.exit(__doc__)
    path = f"/tmp/arteria-key-locality-{mode}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA wal_autocheckpoint=10000")
    db.execute("PRAGMA cache_size=-8192")
    if mode == "codes-in-index":
        db.executescript(SCHEMA_CODES_IN_INDEX)
    else:
        db.executescript(SCHEMA.format(key="" if mode == "no-key" else ", PRIMARY KEY (resource_type, id)"))
    rng = random.Random(1)
    sequence = iter(range(1 << 62))

    def new_id():
        if mode in ("in-time", "codes-in-index"):
            return "%016x" % next(sequence)
        return str(uuid.UUID(int=rng.getrandbits(128)))

    def insert(rows):
        resources, codes = [], []
        for _ in range(rows // PER_PATIENT):
            patient = str(uuid.UUID(int=rng.getrandbits(128)))
            for j in range(PER_PATIENT):
                i = new_id()
                row = ("Observation", i, "t", patient, 1, "ev", "e", OBSERVATION, "2024", 1, None, None)
                if mode == "codes-in-index":
                    row += (f"\x1ehttp://loinc.org\x1f2345-7\x1eurn:local\x1fX{j}\x1e",)
                resources.append(row)
                codes.append(("Observation", patient, i, "http://loinc.org", "2345-7"))
                codes.append(("Observation", patient, i, "urn:local", f"X{j}"))
        db.execute("BEGIN")
        if mode == "codes-in-index":
            db.executemany("INSERT INTO resources VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", resources)
        else:
            db.executemany("INSERT INTO resources VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", resources)
            db.executemany("INSERT INTO codes VALUES (?,?,?,?,?)", codes)
        db.execute("COMMIT")
        return len(resources)

    for _ in range(PRELOAD // 50_000):
        insert(50_000)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cpu, wall, before = time.process_time(), time.time(), written_bytes()
    done = 0
    while done < MEASURED:
        done += insert(PER_TXN)
    wall, cpu, written = time.time() - wall, time.process_time() - cpu, written_bytes() - before
    print(f"{mode}: {done / wall:,.0f} rows/s, {cpu / done * 1e6:.1f} µs CPU per row, "
          f"{written / done / 1024:.1f} KiB written per row ({PRELOAD:,} rows loaded first)")
    db.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


if __name__ == "__main__":
    main()
