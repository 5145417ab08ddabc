#!/usr/bin/env python3
"""Baseline (c) of scripts/bench-snapshot: the copy script most users write by hand.

    bench_pymilvus_copy.py --source URI --target URI --collection SRC --into DST [--batch-size N]

pymilvus 2.3 ORM: `Collection.query_iterator(batch_size=..., output_fields=[...])` over the
(indexed, loaded) source, each batch inserted as it comes into a fresh target collection
created with the source's schema. Only the copy loop is timed; the flush after it is timed
separately. Prints one line:
    PYCOPY rows=N seconds=S rows_per_s=R batch_size=B flush_seconds=F
Exits non-zero on any error or when the row count is wrong.
"""
import argparse
import sys
import time

from pymilvus import Collection, CollectionSchema, connections, utility


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--collection", required=True)
    p.add_argument("--into", required=True)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--expect", type=int, default=-1)
    a = p.parse_args()

    connections.connect("src", uri=a.source)
    connections.connect("dst", uri=a.target)
    src = Collection(a.collection, using="src")
    fields = [f.name for f in src.schema.fields]

    if utility.has_collection(a.into, using="dst"):
        utility.drop_collection(a.into, using="dst")
    schema = CollectionSchema(src.schema.fields, description=src.schema.description)
    dst = Collection(a.into, schema=schema, using="dst")

    # --- the typical hand-written copy loop (timed) ---
    t0 = time.perf_counter()
    copied = 0
    it = src.query_iterator(batch_size=a.batch_size, output_fields=fields)
    while True:
        batch = it.next()
        if not batch:
            it.close()
            break
        res = dst.insert(batch)
        copied += res.insert_count
    secs = time.perf_counter() - t0
    # --- end of the timed loop ---

    t1 = time.perf_counter()
    dst.flush()
    flush_secs = time.perf_counter() - t1
    if a.expect >= 0 and copied != a.expect:
        sys.exit(f"pymilvus copy: inserted {copied} rows, expected {a.expect}")
    print(
        f"PYCOPY rows={copied} seconds={secs:.3f} rows_per_s={copied / secs:.0f} "
        f"batch_size={a.batch_size} flush_seconds={flush_secs:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
