#!/usr/bin/env python3
"""Readiness probes used by scripts/testenv (`up` waits on them, `status` asks them once).

  ready.py milvus --uri http://127.0.0.1:19530 [--healthz URL] [--pid N] [--timeout S] [--log FILE]
      ready when pymilvus MilvusClient(uri).list_collections() answers and, with --healthz,
      Milvus's http://127.0.0.1:METRICS_PORT/healthz says OK (every component healthy: the
      proxy answers list_collections a little before the data/query nodes are up).
      Works with pymilvus 2.3.x (venv-milvus23) and 3.x (venv-lite).
  ready.py kafka --brokers 127.0.0.1:9092 --topics a,b,c [--pid N] [--timeout S] [--log FILE]
      ready when a TCP connect works and the broker's metadata lists every topic
      (confluent_kafka from venv-milvus23).

--pid: give up at once (exit 2) when that process is gone, instead of waiting out the
timeout: a crashed server should fail fast and point at its log.
Exit 0 ready, 1 timeout, 2 process died.
"""
import argparse
import os
import socket
import sys
import time


def alive(pid):
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists" for kill(0): treat it as dead.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def probe_milvus(uri, attempt_timeout):
    # Imported lazily: the kafka probe runs where pymilvus may not be importable quickly.
    from pymilvus import MilvusClient  # noqa: WPS433
    client = MilvusClient(uri=uri, timeout=attempt_timeout)
    try:
        client.list_collections()
    finally:
        try:
            client.close()
        except Exception:  # pylint: disable=broad-except
            pass
    return True


def probe_healthz(url, attempt_timeout):
    import urllib.request  # noqa: WPS433
    with urllib.request.urlopen(url, timeout=attempt_timeout) as resp:
        body = resp.read().decode("utf-8", "replace")
    if "OK" not in body:
        raise RuntimeError(f"{url} says {body.strip()[:200]!r}")
    return True


def probe_kafka(brokers, topics, attempt_timeout):
    host, port = brokers.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=attempt_timeout):
        pass
    from confluent_kafka.admin import AdminClient  # noqa: WPS433
    admin = AdminClient({"bootstrap.servers": brokers, "log_level": 3})
    md = admin.list_topics(timeout=attempt_timeout)
    missing = [t for t in topics if t not in md.topics or md.topics[t].error is not None]
    if missing:
        raise RuntimeError(f"topics missing on broker: {', '.join(missing)}")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["milvus", "kafka"])
    ap.add_argument("--uri")
    ap.add_argument("--healthz", default="")
    ap.add_argument("--brokers")
    ap.add_argument("--topics", default="")
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=0, help="0 = probe once")
    ap.add_argument("--log", default="", help="log file to name in the error message")
    ap.add_argument("--name", default="")
    a = ap.parse_args()
    name = a.name or a.kind
    where = f" (see {a.log})" if a.log else ""
    deadline = time.monotonic() + a.timeout
    last_err = None
    while True:
        if not alive(a.pid):
            print(f"{name}: process {a.pid} exited before it became ready{where}", file=sys.stderr)
            return 2
        try:
            if a.kind == "milvus":
                if a.healthz:
                    probe_healthz(a.healthz, attempt_timeout=5)
                probe_milvus(a.uri, attempt_timeout=5)
            else:
                topics = [t for t in a.topics.split(",") if t]
                probe_kafka(a.brokers, topics, attempt_timeout=5)
            return 0
        except Exception as err:  # pylint: disable=broad-except
            last_err = err
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    if a.timeout:
        print(f"{name}: not ready after {a.timeout:.0f}s: {last_err}{where}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
