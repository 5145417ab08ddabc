#!/usr/bin/env python3
"""Smoke check of a running test environment (not a Rust test; run by hand).

    scripts/testenv up && . target/testenv/env.sh && "$FERRY_TEST_PYTHON" scripts/lib/smoke.py

With venv-milvus23 (pymilvus 2.3): source Milvus create/insert/delete/query/flush, the WAL
records on the Kafka DML topics (confluent_kafka, assign partition 0 from offset 0, no group
commits), binlogs on disk, target Milvus create/insert/query, and that source and target keep
separate metadata (etcd) and WALs (rocksmq only on the target). Then it re-runs itself with
FERRY_TEST_LITE_PYTHON (pymilvus 3.x) for Milvus Lite. Exit 0 when everything checked out.
"""
import os
import random
import subprocess
import sys
import time

DIM = 8
FAILURES = []


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def env(name):
    val = os.environ.get(name)
    if not val:
        sys.exit(f"{name} is not set: source target/testenv/env.sh first")
    return val


def crud(uri, coll, label):
    """create (int64 pk + 8-d float vector), insert 10, delete 2, strong query -> 8 rows."""
    from pymilvus import MilvusClient
    c = MilvusClient(uri=uri)
    if coll in c.list_collections():
        c.drop_collection(coll)
    c.create_collection(coll, dimension=DIM, primary_field_name="id", id_type="int",
                        vector_field_name="vec", auto_id=False, consistency_level="Strong")
    rows = [{"id": i, "vec": [random.random() for _ in range(DIM)]} for i in range(10)]
    res = c.insert(coll, rows)
    n = res["insert_count"] if isinstance(res, dict) else getattr(res, "insert_count", None)
    check(n == 10, f"{label}: insert 10 rows (insert_count={n})")
    c.delete(coll, pks=[0, 1])
    got = c.query(coll, filter="id >= 0", output_fields=["id"], consistency_level="Strong")
    ids = sorted(r["id"] for r in got)
    check(ids == list(range(2, 10)), f"{label}: query after delete of 2 -> {len(ids)} rows {ids}")
    return c


def kafka_records(brokers, prefix):
    """Read every DML topic from offset 0; return {topic: [msg_type, ...]}."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING, KafkaError
    try:
        from pymilvus.grpc_gen import common_pb2
        header_cls = getattr(common_pb2, "MsgHeader", None)
    except ImportError:
        header_cls = None
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "ferry-smoke",          # librdkafka wants one; nothing is committed
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "log_level": 3,
    })
    out = {}
    try:
        for i in range(16):
            topic = f"{prefix}-rootcoord-dml_{i}"
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            types = []
            deadline = time.monotonic() + 30
            while len(types) < high - low and time.monotonic() < deadline:
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        break
                    raise RuntimeError(f"{topic}: {msg.error()}")
                if header_cls is not None:
                    h = header_cls()
                    try:
                        h.ParseFromString(msg.value())
                        types.append(h.base.msg_type)
                    except Exception:  # pylint: disable=broad-except
                        types.append(-1)
                else:
                    types.append(-1)
            out[topic] = (high - low, types)
    finally:
        consumer.close()
    return out


def main_milvus23():
    src_uri, tgt_uri = env("FERRY_TEST_SOURCE_URI"), env("FERRY_TEST_TARGET_URI")
    brokers, prefix = env("FERRY_TEST_KAFKA_BROKERS"), env("FERRY_TEST_TOPIC_PREFIX")
    src_dir = env("FERRY_TEST_SOURCE_DATA_DIR")
    tgt_dir = os.environ.get("FERRY_TEST_TARGET_DATA_DIR", "")

    print(f"source {src_uri} (WAL on Kafka {brokers})", flush=True)
    src = crud(src_uri, "ferry_smoke_src", "source")

    print(f"kafka {brokers}: DML topics read from offset 0", flush=True)
    recs = kafka_records(brokers, prefix)
    names = {100: "CreateCollection", 400: "Insert", 401: "Delete", 1200: "TimeTick"}
    seen = set()
    for topic, (count, types) in recs.items():
        kinds = {}
        for t in types:
            kinds[names.get(t, str(t))] = kinds.get(names.get(t, str(t)), 0) + 1
        seen.update(types)
        print(f"    {topic:28} {count:6d} records  {kinds}", flush=True)
    total = sum(c for c, _ in recs.values())
    check(total > 0, f"kafka: records on the DML topics ({total})")
    for mt in (100, 400, 401):
        check(mt in seen, f"kafka: a {names[mt]} ({mt}) record is in the WAL")

    # pymilvus 2.3's MilvusClient has no flush(): use the ORM for it.
    from pymilvus import connections, Collection
    connections.connect("smoke_src", uri=src_uri)
    Collection("ferry_smoke_src", using="smoke_src").flush()
    binlogs = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        binlogs = [os.path.join(d, f) for d, _, fs in os.walk(src_dir) for f in fs
                   if f"{os.sep}insert_log{os.sep}" in os.path.join(d, f)]
        if binlogs:
            break
        time.sleep(1)
    check(bool(binlogs), f"source: insert binlogs under FERRY_TEST_SOURCE_DATA_DIR after flush ({len(binlogs)} files"
          + (f", e.g. {os.path.relpath(binlogs[0], src_dir)})" if binlogs else ")"))

    print(f"target {tgt_uri} (rocksmq)", flush=True)
    tgt = crud(tgt_uri, "ferry_smoke_tgt", "target")

    print("isolation source <-> target", flush=True)
    src_colls, tgt_colls = set(src.list_collections()), set(tgt.list_collections())
    check("ferry_smoke_tgt" not in src_colls and "ferry_smoke_src" not in tgt_colls,
          f"separate metadata (etcd): source has {sorted(src_colls)}, target has {sorted(tgt_colls)}")
    if tgt_dir:
        def size(p):
            return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs) if os.path.isdir(p) else 0
        src_rmq, tgt_rmq = size(os.path.join(src_dir, "rocksmq")), size(os.path.join(tgt_dir, "rocksmq"))
        check(tgt_rmq > 0, f"target WAL in its own rocksmq dir ({tgt_rmq} bytes under {os.path.join(tgt_dir, 'rocksmq')})")
        print(f"    source rocksmq dir: {src_rmq} bytes (source WAL is on Kafka)", flush=True)
        check(os.path.realpath(src_dir) != os.path.realpath(tgt_dir), "separate data dirs")

    lite_py = os.environ.get("FERRY_TEST_LITE_PYTHON")
    if lite_py:
        rc = subprocess.call([lite_py, os.path.abspath(__file__), "lite"])
        check(rc == 0, "lite: smoke part exited 0")
    else:
        check(False, "FERRY_TEST_LITE_PYTHON not set")


def main_lite():
    uri = env("FERRY_TEST_LITE_URI")
    import pymilvus
    print(f"lite {uri} (pymilvus {pymilvus.__version__})", flush=True)
    crud(uri, "ferry_smoke_lite", "lite")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "lite":
        main_lite()
    else:
        main_milvus23()
    part = "lite part" if len(sys.argv) > 1 else "smoke"
    if FAILURES:
        print(f"{part}: {len(FAILURES)} check(s) failed", flush=True)
        sys.exit(1)
    print(f"{part}: all checks passed", flush=True)
