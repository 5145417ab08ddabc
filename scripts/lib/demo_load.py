#!/usr/bin/env python3
"""Loads the demo's sample collection into the source Milvus (pymilvus 2.3).

    demo_load.py URI COLLECTION ROWS

`products`-like rows: int64 id, 128-d float vector, VarChar title, JSON attributes, a
dynamic field; two partitions; an IVF_FLAT index; loaded. Drops a collection of that name
first, so the demo can be re-run.
"""
import json
import random
import sys

from pymilvus import (Collection, CollectionSchema, DataType, FieldSchema, connections,
                      utility)

uri, name, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
DIM = 128
connections.connect(uri=uri)
if utility.has_collection(name):
    utility.drop_collection(name)
schema = CollectionSchema(
    [
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("embedding", DataType.FLOAT_VECTOR, dim=DIM),
        FieldSchema("title", DataType.VARCHAR, max_length=256),
        FieldSchema("attrs", DataType.JSON),
    ],
    description="demo products",
    enable_dynamic_field=True,
)
c = Collection(name, schema, shards_num=2)
c.create_partition("clearance")
rng = random.Random(7)
batch = 5000
for start in range(0, rows, batch):
    ids = list(range(start, min(rows, start + batch)))
    data = [
        {
            "id": i,
            "embedding": [rng.random() for _ in range(DIM)],
            "title": f"product {i}",
            "attrs": {"price": round(rng.random() * 100, 2), "tags": ["a", "b"][: i % 3]},
            "stock": i % 17,
        }
        for i in ids
    ]
    c.insert(data, partition_name="clearance" if (start // batch) % 4 == 3 else None)
c.delete(f"id in {list(range(0, rows, 97))}")
c.create_index("embedding", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 64}})
c.load()
print(f"loaded {rows} rows into {name} (every 97th deleted)")
