#!/usr/bin/env python3
"""The demo's application: keeps writing to the source until told to stop.

    demo_writer.py URI COLLECTION FIRST_NEW_ID STOP_FILE STOPPED_FILE

Every ~100 ms: inserts 50 new rows, upserts 20 existing ones (new titles and vectors) and
deletes 10. When STOP_FILE appears (the cutover's freeze hook creates it), it finishes the
write in flight, writes STOPPED_FILE with the number of rounds, and exits: from then on the
source takes no writes, which is what the hook promises ferry.
"""
import os
import random
import sys
import time

from pymilvus import Collection, connections

uri, name, next_id, stop_file, stopped_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
DIM = 128
connections.connect(uri=uri)
c = Collection(name)
rng = random.Random(11)


def row(i, r):
    return {
        "id": i,
        "embedding": [rng.random() for _ in range(DIM)],
        "title": f"product {i} rev {r}",
        "attrs": {"price": round(rng.random() * 100, 2), "rev": r},
        "stock": (i + r) % 17,
    }


rounds = 0
while not os.path.exists(stop_file):
    rounds += 1
    new = [row(i, 0) for i in range(next_id, next_id + 50)]
    c.insert(new)
    old = [row(rng.randrange(0, next_id), rounds) for _ in range(20)]
    # one upsert per key per request: Milvus keeps the last of duplicates, ferry too, but
    # keeping keys unique makes the demo's numbers easy to check
    old = list({r["id"]: r for r in old}.values())
    c.upsert(old)
    gone = sorted({rng.randrange(0, next_id) for _ in range(10)})
    c.delete(f"id in {gone}")
    next_id += 50
    time.sleep(0.1)
with open(stopped_file, "w") as f:
    f.write(f"{rounds}\n")
print(f"writer: stopped after {rounds} rounds, last id {next_id - 1}", flush=True)
