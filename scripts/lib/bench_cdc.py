#!/usr/bin/env python3
"""Measuring half of scripts/bench-cdc: a fixed-rate writer, marker checkers, metric sampler.

    bench_cdc.py phase --name NAME --source URI --target URI --src-coll C --dst-coll D
                       --first-id N --marker-base B --rate R --seconds S
                       --metrics URL --pid PID --ferry BIN --control ADDR --env-dir DIR
                       --out FILE.json
                       [--outage-mode none|gate|restart --outage-at A --outage-seconds O
                        --gate-pid P --after S --repo DIR]
                       [--marker-ms 200] [--poll-ms 50] [--consistency Eventually|Strong]
                       [--writer-threads 4] [--drain-timeout 180]
    bench_cdc.py report STEADY.json [OUTAGE.json] [--sink "SINK rows=... rows_per_s=..."]
    bench_cdc.py compare DIR... (each with steady.json, maybe outage.json and sink.txt)

One `phase` runs, in threads of one process (pymilvus 2.3 against the benchmark collection of
examples/bench_sink.rs: `id` Int64, `vec` FloatVector(128), `s` VarChar, `j` JSON):

- writer: every 100 ms, R/10 row operations on the source: 70 % inserts of new ids, 20 %
  upserts and 10 % deletes of random existing ids (one insert, one upsert, one delete call).
  Every --marker-ms one extra row, a *marker* (key B+k, never upserted or deleted, its `s`
  holds the send time), rides in that tick's insert; its send time is taken right before the
  insert call. The calls run on --writer-threads threads (default 4), so a slow call does
  not shift the schedule; the achieved rate is reported.
- two checkers, one per server, poll for the markers not seen yet (`id in [...]`, at the
  given consistency level) every --poll-ms and record the first time each comes back:
  target first-seen - send = ferry's end-to-end lag; source first-seen - send = the floor
  Milvus itself imposes (when the source can read its own write back). Both run at once, so
  each marker has both figures from the same moment.
- sampler: every 500 ms, ferry's /metrics (`ferry_stream_lag_seconds` max over collections,
  `ferry_apply_rows_total`, `ferry_apply_events_total`, `ferry_log_pending_bytes`/`_events`,
  `ferry_apply_target_errors_total`), the daemon's VmRSS/VmHWM from /proc/PID/status and
  the test environment's server pids (a restart nobody asked for voids the phase: exit 3 in
  `report`); once a second `ferry status --json` for fresh source/applied positions.
- outage (optional): at --outage-at seconds the target becomes unreachable for ferry for
  --outage-seconds: `gate` closes bench_tcp_gate.py (SIGUSR1/SIGUSR2; ferry's target URI
  points at it), `restart` runs `scripts/testenv restart target O` (the real server stops,
  for everyone using the test environment). The writer keeps going until --after seconds
  past the target's return (at least --seconds in all).

After the writer stops, the phase waits until every marker is seen on both sides (a marker
never seen on the target is lost data: exit 1). It writes every raw figure to --out; the
`report` command turns phase files into the table.
"""
import argparse
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

TICK = 0.1
DIM = 128


def pct(xs, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(0, math.ceil(p / 100 * len(s)) - 1)
    return s[k]


# --- the phase -------------------------------------------------------------------------------


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = {}  # marker key -> send time
        self.seen = {"source": {}, "target": {}}
        self.stop_writer = threading.Event()
        self.stop_all = threading.Event()
        self.samples = []
        self.positions = []
        self.pids = []
        self.counts = {"insert": 0, "upsert": 0, "delete": 0, "marker": 0, "calls": 0, "errors": 0,
                       "ticks": 0, "late_ticks": 0, "blocked_s": 0.0}
        self.call_seconds = {"insert": [], "upsert": [], "delete": []}
        self.checker_errors = {"source": 0, "target": 0}
        self.next_id = 0
        self.writer_start = 0.0
        self.writer_end = 0.0


def connect(alias, uri):
    from pymilvus import connections

    connections.connect(alias=alias, uri=uri)


def columns(rng, ids, rev, marker_note=None):
    import numpy as np

    vecs = rng.random((len(ids), DIM), dtype=np.float32).tolist()
    s = [marker_note if (marker_note and i == ids[-1]) else f"cdc bench {i} rev {rev}" for i in ids]
    j = [{"rev": rev, "k": i % 97} for i in ids]
    return [list(ids), vecs, s, j]


def writer(a, st):
    """The fixed-rate writer. Keys and rows are made on this thread, on schedule; the calls
    run on a small pool (a call to the source takes tens of ms here, so three calls in a row
    would not fit a 100 ms tick). At most --writer-threads x 4 calls wait: past that the
    source is saturated and the achieved rate falls below the asked one (reported)."""
    from concurrent.futures import ThreadPoolExecutor
    import numpy as np
    from pymilvus import Collection

    c = Collection(a.src_coll, using="w")
    rng = np.random.default_rng(a.first_id)
    pick = random.Random(a.first_id)
    per_tick = a.rate * TICK
    acc = {"insert": 0.0, "upsert": 0.0, "delete": 0.0}
    share = {"insert": 0.7, "upsert": 0.2, "delete": 0.1}
    next_id = a.first_id
    marker_seq = 0
    slots = threading.BoundedSemaphore(a.writer_threads * 4)

    # Upserts and deletes pick keys below the first insert still in flight: an upsert that
    # overtook its key's insert would leave the key twice on the source (Milvus does not
    # deduplicate inserts), which ferry, replaying inserts as upserts, rightly collapses.
    inflight = set()

    def settled():
        with st.lock:
            return min(inflight, default=next_id)

    def call(op, n, fn, marker=None, first=None):
        try:
            t_send = time.time()
            fn()
            with st.lock:
                st.call_seconds[op].append(time.time() - t_send)
                st.counts["calls"] += 1
                st.counts[op] += n
                if marker is not None:
                    st.sent[marker] = t_send
                    st.counts["marker"] += 1
        except Exception as e:  # the source itself failing is worth seeing, not fatal
            with st.lock:
                st.counts["errors"] += 1
            print(f"writer: {op}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr, flush=True)
        finally:
            if first is not None:
                with st.lock:
                    inflight.discard(first)
            slots.release()

    def submit(pool, *args):
        t = time.time()
        slots.acquire()
        st.counts["blocked_s"] += time.time() - t
        pool.submit(call, *args)

    pool = ThreadPoolExecutor(max_workers=a.writer_threads)
    st.writer_start = t_next = next_marker = time.time()
    tick = 0
    while not st.stop_writer.is_set():
        tick += 1
        n = {}
        for op in acc:
            acc[op] += per_tick * share[op]
            n[op] = int(acc[op])
            acc[op] -= n[op]
        start = next_id if n["insert"] else None
        ids = list(range(next_id, next_id + n["insert"]))
        with st.lock:
            if start is not None:
                inflight.add(start)
            next_id += n["insert"]
        marker = None
        if time.time() >= next_marker:
            marker = a.marker_base + marker_seq
            marker_seq += 1
            next_marker += a.marker_ms / 1000
            ids.append(marker)
        if ids:
            note = f"marker sent~{time.time():.3f}" if marker is not None else None
            cols = columns(rng, ids, 0, note)
            submit(pool, "insert", n["insert"], lambda cols=cols: c.insert(cols), marker, start)
        bound = settled()
        if n["upsert"] and bound > 0:
            keys = sorted({pick.randrange(0, bound) for _ in range(n["upsert"])})
            cols = columns(rng, keys, tick)
            submit(pool, "upsert", len(keys), lambda cols=cols: c.upsert(cols))
        if n["delete"] and bound > 0:
            keys = sorted({pick.randrange(0, bound) for _ in range(n["delete"])})
            submit(pool, "delete", len(keys), lambda keys=keys: c.delete(f"id in {keys}"))
        t_next += TICK
        delay = t_next - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -TICK:
            st.counts["late_ticks"] += 1
    st.counts["ticks"] = tick
    pool.shutdown(wait=True)
    st.writer_end = time.time()
    st.next_id = next_id


def checker(a, st, side):
    from pymilvus import Collection

    c = Collection(a.src_coll if side == "source" else a.dst_coll, using=side)
    seen = st.seen[side]
    while not st.stop_all.is_set():
        t0 = time.time()
        with st.lock:
            pending = [k for k in st.sent if k not in seen][:1000]
        if pending:
            try:
                rows = c.query(f"id in {pending}", output_fields=["id"], consistency_level=a.consistency)
                t = time.time()
                with st.lock:
                    for r in rows:
                        seen.setdefault(r["id"], t)
            except Exception as e:
                st.checker_errors[side] += 1
                if st.checker_errors[side] <= 3 or st.checker_errors[side] % 50 == 0:
                    print(f"checker {side}: {type(e).__name__}: {str(e)[:160]}", file=sys.stderr, flush=True)
                time.sleep(0.2)
        delay = a.poll_ms / 1000 - (time.time() - t0)
        if delay > 0:
            time.sleep(delay)


METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def scrape(url):
    out = {}
    with urllib.request.urlopen(url, timeout=2) as r:
        for line in r.read().decode().splitlines():
            m = METRIC.match(line)
            if not m or line.startswith("#"):
                continue
            name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
            out.setdefault(name, []).append((labels, value))
    return out


def proc_kb(pid):
    kb = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    kb[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return kb


def sampler(a, st):
    while not st.stop_all.is_set():
        t = time.time()
        try:
            m = scrape(a.metrics)
            total = lambda n, f=lambda l: True: sum(v for l, v in m.get(n, []) if f(l))
            lag = max((v for _, v in m.get("ferry_stream_lag_seconds", [])), default=float("nan"))
            kb = proc_kb(a.pid)
            st.samples.append({
                "t": t,
                "lag": lag,
                "rows": total("ferry_apply_rows_total"),
                "events": total("ferry_apply_events_total", lambda l: 'op="ddl"' not in l),
                "pending_bytes": total("ferry_log_pending_bytes"),
                "pending_events": total("ferry_log_pending_events"),
                "target_errors": total("ferry_apply_target_errors_total"),
                "rss_kb": kb.get("VmRSS", 0),
                "hwm_kb": kb.get("VmHWM", 0),
            })
            pids = env_pids(a.env_dir)
            if not st.pids or st.pids[-1][1] != pids:
                st.pids.append((t, pids))
        except Exception as e:
            print(f"sampler: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        time.sleep(max(0.0, 0.5 - (time.time() - t)))


def status_sampler(a, st):
    """Fresh positions once a second from `ferry status --json` (the /metrics gauges are
    refreshed only every second, too coarse to split the lag into its parts)."""
    while not st.stop_all.is_set():
        t0 = time.time()
        try:
            out = subprocess.run([a.ferry, "status", "--json", "--control", a.control],
                                 capture_output=True, timeout=5, check=True).stdout
            t1 = time.time()
            job = json.loads(out)["jobs"][0]
            src, applied = int(job["source_position_ms"]) / 1000, int(job["applied_position_ms"]) / 1000
            if src > 0 and applied > 0:
                st.positions.append({"t": (t0 + t1) / 2, "source": src, "applied": applied})
        except Exception as e:
            print(f"status sampler: {type(e).__name__}: {str(e)[:160]}", file=sys.stderr, flush=True)
        time.sleep(max(0.0, 1.0 - (time.time() - t0)))


def env_pids(env_dir):
    """The test environment's server processes now (their pid files): a change means a
    server restarted (another engineer's outage test, say) and the figures are not valid."""
    pids = {}
    for name in ("kafka", "source", "target"):
        try:
            with open(os.path.join(env_dir, "pids", f"{name}.pid")) as f:
                pids[name] = f.read().split()[0]
        except (OSError, IndexError):
            pids[name] = None
    return pids


def outage(a, st, times):
    time.sleep(a.outage_at)
    if a.outage_mode == "gate":
        times["down"] = time.time()
        os.kill(a.gate_pid, signal.SIGUSR1)
        print(f"outage: target cut for ferry (gate closed) for {a.outage_seconds}s", file=sys.stderr, flush=True)
        time.sleep(a.outage_seconds)
        os.kill(a.gate_pid, signal.SIGUSR2)
        times["up"] = time.time()
    else:
        times["down"] = time.time()
        print(f"outage: scripts/testenv restart target {a.outage_seconds}", file=sys.stderr, flush=True)
        subprocess.run([os.path.join(a.repo, "scripts/testenv"), "restart", "target", str(a.outage_seconds)],
                       check=True, stdout=sys.stderr)
        times["up"] = time.time()
    print(f"outage: target back after {times['up'] - times['down']:.1f}s", file=sys.stderr, flush=True)


def last_sample_before(samples, t):
    best = None
    for s in samples:
        if s["t"] <= t:
            best = s
    return best or samples[0]


def phase(a):
    st = State()
    connect("w", a.source)
    connect("source", a.source)
    connect("target", a.target)
    threads = [threading.Thread(target=sampler, args=(a, st), daemon=True),
               threading.Thread(target=status_sampler, args=(a, st), daemon=True)]
    for t in threads:
        t.start()
    # Start from a drained log: what the snapshot left behind is not this phase's lag.
    deadline = time.time() + 120
    while time.time() < deadline:
        if st.samples and st.samples[-1]["pending_events"] == 0:
            break
        time.sleep(0.5)
    for side in ("source", "target"):
        t = threading.Thread(target=checker, args=(a, st, side), daemon=True)
        t.start()
        threads.append(t)
    w = threading.Thread(target=writer, args=(a, st), daemon=True)
    w.start()
    times = {}
    o = None
    if a.outage_mode != "none":
        o = threading.Thread(target=outage, args=(a, st, times), daemon=True)
        o.start()
    start = time.time()
    while True:
        time.sleep(0.2)
        now = time.time()
        if now - start < a.seconds:
            continue
        if o is not None and ("up" not in times or now - times["up"] < a.after):
            if now - start > a.seconds + a.outage_seconds + a.after + 600:
                break  # the restart hangs: stop writing, the drain below reports it
            continue
        break
    st.stop_writer.set()
    w.join()
    if o is not None:
        o.join(timeout=600)
    print(f"writer stopped after {st.writer_end - st.writer_start:.1f}s; waiting for every marker",
          file=sys.stderr, flush=True)
    deadline = time.time() + a.drain_timeout
    while time.time() < deadline:
        with st.lock:
            missing = {s: [k for k in st.sent if k not in st.seen[s]] for s in st.seen}
        if not missing["source"] and not missing["target"]:
            break
        time.sleep(0.2)
    drained = time.time()
    time.sleep(1.5)  # one more metrics refresh
    st.stop_all.set()
    for t in threads:
        t.join(timeout=10)
    with st.lock:
        markers = [
            {"key": k, "sent": t, "source": st.seen["source"].get(k), "target": st.seen["target"].get(k)}
            for k, t in sorted(st.sent.items())
        ]
    out = {
        "name": a.name,
        "rate": a.rate,
        "consistency": a.consistency,
        "poll_ms": a.poll_ms,
        "marker_ms": a.marker_ms,
        "writer_start": st.writer_start,
        "writer_end": st.writer_end,
        "drained": drained,
        "counts": st.counts,
        "call_seconds": st.call_seconds,
        "checker_errors": st.checker_errors,
        "next_id": st.next_id,
        "next_marker": a.marker_base + st.counts["marker"],
        "markers": markers,
        "samples": st.samples,
        "positions": st.positions,
        "env_pids": st.pids,
        "outage": {"mode": a.outage_mode, "seconds": a.outage_seconds, **times},
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    lost = [m["key"] for m in markers if m["target"] is None]
    if lost:
        print(f"bench_cdc: {len(lost)} of {len(markers)} markers never appeared on the target "
              f"within {a.drain_timeout}s (first keys {lost[:5]})", file=sys.stderr)
        return 1
    return 0


# --- the report --------------------------------------------------------------------------------


def summary(xs):
    if not xs:
        return ("-", "-", "-", "0")
    return (f"{pct(xs, 50):.3f}", f"{pct(xs, 99):.3f}", f"{max(xs):.3f}", str(len(xs)))


def analyse(p):
    ms = p["markers"]
    e2e = [m["target"] - m["sent"] for m in ms if m["target"] is not None]
    src = [m["source"] - m["sent"] for m in ms if m["source"] is not None]
    diff = [m["target"] - m["source"] for m in ms if m["target"] is not None and m["source"] is not None]
    w0, w1 = p["writer_start"], p["writer_end"]
    win = [s for s in p["samples"] if w0 <= s["t"] <= w1]
    lags = [s["lag"] for s in win if s["lag"] == s["lag"]]
    a = last_sample_before(p["samples"], w0)
    b = last_sample_before(p["samples"], p["drained"])
    dt = max(1e-9, b["t"] - a["t"])
    c = p["counts"]
    written = c["insert"] + c["upsert"] + c["delete"] + c["marker"]
    pos = [x for x in p.get("positions", []) if w0 <= x["t"] <= w1]
    restarted = set()
    pids = p.get("env_pids", [])
    for (_, before), (_, after) in zip(pids, pids[1:]):
        restarted |= {k for k in before if before[k] != after[k]}
    if p["outage"]["mode"] == "restart":
        restarted.discard("target")
    return {
        "tick_age": [x["t"] - x["source"] for x in pos],
        "behind": [x["source"] - x["applied"] for x in pos],
        "applied_age": [x["t"] - x["applied"] for x in pos],
        "restarted": sorted(restarted),
        "e2e": e2e,
        "src": src,
        "diff": diff,
        "lags": lags,
        "written_rps": written / max(1e-9, w1 - w0),
        "applied_rps": (b["rows"] - a["rows"]) / dt,
        "applied_eps": (b["events"] - a["events"]) / dt,
        "applied_rows": b["rows"] - a["rows"],
        "written_rows": written,
        "rss_max_mb": max((s["rss_kb"] for s in win), default=0) / 1024,
        "hwm_mb": max((s["hwm_kb"] for s in p["samples"]), default=0) / 1024,
        "lost": sum(1 for m in ms if m["target"] is None),
    }


def outage_figures(o, s):
    """Phase 2's recovery: the lag threshold (phase 1's p99, at least 1 s), when the lag got
    back under it, when the outage's backlog was all visible, and when rows were first applied
    again (absolute times; None when it did not happen)."""
    down, up = o["outage"]["down"], o["outage"]["up"]
    after = [sm for sm in o["samples"] if sm["t"] >= up]
    thr = max(1.0, pct(s["lags"], 99)) if s["lags"] else 1.0
    caught = next((sm["t"] for sm in after if sm["lag"] <= thr), None)
    backlog = [m for m in o["markers"] if down <= m["sent"] < up]
    vis = [m["target"] for m in backlog if m["target"] is not None]
    backlog_done = max(vis) - up if vis and len(vis) == len(backlog) else None
    first_after = min((sm["t"] for sm in after if sm["rows"] > last_sample_before(o["samples"], up)["rows"]),
                      default=None)
    return thr, caught, backlog_done, first_after


def compare(args):
    """Side by side: the figures of two `bench-cdc` measurements (directories holding
    steady.json, maybe outage.json and sink.txt), Kafka first."""
    cols = []
    for d in args.dirs:
        with open(os.path.join(d, "steady.json")) as f:
            steady = json.load(f)
        outage = None
        if os.path.exists(os.path.join(d, "outage.json")):
            with open(os.path.join(d, "outage.json")) as f:
                outage = json.load(f)
        sink = None
        if os.path.exists(os.path.join(d, "sink.txt")):
            m = re.search(r"rows_per_s=([0-9.]+)", open(os.path.join(d, "sink.txt")).read())
            sink = float(m.group(1)) if m else None
        cols.append((os.path.basename(d.rstrip("/")), steady, outage, sink))

    def two(xs):
        return f"{pct(xs, 50):.3f} / {pct(xs, 99):.3f}" if xs else "-"

    rows = {}
    for name, steady, outage, sink in cols:
        s = analyse(steady)
        r = rows.setdefault(name, {})
        r["(e) end-to-end, p50 / p99 s"] = two(s["e2e"])
        r["(s) source's own visibility, p50 / p99 s"] = two(s["src"])
        r["(e)-(s) what ferry adds, p50 / p99 s"] = two(s["diff"])
        r["ferry_stream_lag_seconds, p50 / p99"] = two(s["lags"])
        r["written rows/s (asked)"] = f"{s['written_rps']:.0f} ({steady['rate']})"
        r["applied rows/s"] = f"{s['applied_rps']:.0f}"
        r["sink limit rows/s (target)"] = f"{sink:.0f}" if sink else "-"
        r["writer at % of sink limit"] = f"{100 * s['written_rps'] / sink:.1f}" if sink else "-"
        r["daemon RSS max MB (streaming)"] = f"{s['rss_max_mb']:.0f}"
        if outage and "up" in outage["outage"]:
            _, caught, backlog_done, _ = outage_figures(outage, s)
            up = outage["outage"]["up"]
            r["outage: lag back under threshold after s"] = f"{caught - up:.1f}" if caught else "never"
            r["outage: backlog visible after s"] = f"{backlog_done:.1f}" if backlog_done is not None else "-"
    names = [c[0] for c in cols]
    keys = list(dict.fromkeys(k for n in names for k in rows[n]))
    fmt = "{:<44}" + " {:>18}" * len(names)
    print(fmt.format("WAL", *names))
    for k in keys:
        print(fmt.format(k, *(rows[n].get(k, "-") for n in names)))
    return 0


def report(args):
    phases = []
    for path in args.files:
        with open(path) as f:
            phases.append(json.load(f))
    sink = None
    if args.sink:
        m = re.search(r"rows_per_s=([0-9.]+)", args.sink)
        sink = float(m.group(1)) if m else None
    steady = phases[0]
    s = analyse(steady)
    row = "{:<52} {:>8} {:>8} {:>8} {:>6}"
    print()
    print(f"phase 1, steady: writer {steady['rate']} rows/s asked (70% insert / 20% upsert / 10% delete, "
          f"dim {DIM}), {steady['writer_end'] - steady['writer_start']:.0f} s; a marker every "
          f"{steady['marker_ms']} ms, polled every {steady['poll_ms']} ms ({steady['consistency']})")
    print(row.format("seconds", "p50", "p99", "max", "n"))
    print(row.format("(e) end-to-end: marker sent -> seen on target", *summary(s["e2e"])))
    print(row.format("(s) baseline: marker sent -> seen on source", *summary(s["src"])))
    print(row.format("(e)-(s) per marker: what ferry adds", *summary(s["diff"])))
    print(row.format("ferry_stream_lag_seconds, sampled every 0.5 s", *summary(s["lags"])))
    print(row.format("  parts (ferry status, 1/s): wall - newest tick seen", *summary(s["tick_age"])))
    print(row.format("  newest tick seen - applied position", *summary(s["behind"])))
    print(row.format("  wall - applied position", *summary(s["applied_age"])))
    if s["e2e"] and s["src"]:
        print(f"ratio (e)/(s): p50 {pct(s['e2e'], 50) / pct(s['src'], 50):.2f}, "
              f"p99 {pct(s['e2e'], 99) / pct(s['src'], 99):.2f}")
    line = (f"written {s['written_rps']:.0f} rows/s ({s['written_rows']} rows, "
            f"{steady['counts']['errors']} failed calls); applied {s['applied_rps']:.0f} rows/s, "
            f"{s['applied_eps']:.1f} WAL events/s (ferry_apply_*_total)")
    print(line)
    c = steady["counts"]
    if c["ticks"]:
        calls = ", ".join(f"{op} {pct(v, 50) * 1000:.0f}/{pct(v, 99) * 1000:.0f} ms"
                          for op, v in steady["call_seconds"].items() if v)
        print(f"writer more than one tick behind its schedule on {100 * c['late_ticks'] / c['ticks']:.0f} % "
              f"of {c['ticks']} ticks; {c['blocked_s']:.1f} s waiting for a free call slot; source call "
              f"p50/p99: {calls}")
    if sink:
        print(f"sink limit {sink:.0f} rows/s: writer at {100 * s['written_rps'] / sink:.1f} % of it")
    print(f"daemon RSS while streaming max {s['rss_max_mb']:.0f} MB; peak (VmHWM, whole run incl. snapshot) "
          f"{s['hwm_mb']:.0f} MB")
    rc = 1 if s["lost"] else 0
    if s["restarted"]:
        print(f"WARNING: {', '.join(s['restarted'])} restarted during phase 1 (not by this benchmark: "
              f"another test run?): these figures are not valid")
        rc = rc or 3
    if len(phases) > 1:
        o = phases[1]
        x = analyse(o)
        out = o["outage"]
        print()
        print(f"phase 2, target outage ({out['mode']}, {out['seconds']} s) while the writer runs at "
              f"{o['rate']} rows/s, {o['writer_end'] - o['writer_start']:.0f} s")
        if "up" not in out:
            print("the target did not come back")
            return 1
        down, up = out["down"], out["up"]
        during = [sm for sm in o["samples"] if sm["t"] >= down]
        thr, caught, backlog_done, first_after = outage_figures(o, s)
        print(f"target unreachable for ferry {up - down:.1f} s")
        print(f"first rows applied after the target returned: "
              f"{'%.1f s' % (first_after - up) if first_after else 'never'} after its return")
        print(f"catch-up: ferry_stream_lag_seconds back under {thr:.2f} s "
              f"{'%.1f s' % (caught - up) if caught else 'never (within the run)'} after the return")
        print(f"backlog visible: every marker sent during the outage seen on the target "
              f"{'%.1f s' % backlog_done if backlog_done is not None else '-'} after the return")
        print(f"peak ferry_log_pending_bytes {max((sm['pending_bytes'] for sm in during), default=0) / 1e6:.2f} MB, "
              f"peak pending events {max((sm['pending_events'] for sm in during), default=0):.0f}, "
              f"peak lag {max((sm['lag'] for sm in during), default=0):.1f} s")
        print(row.format("seconds", "p50", "p99", "max", "n"))
        print(row.format("(e) end-to-end over the whole phase", *summary(x["e2e"])))
        print(row.format("(s) source visibility over the whole phase", *summary(x["src"])))
        print(f"written {x['written_rps']:.0f} rows/s; applied {x['applied_rps']:.0f} rows/s; target errors "
              f"counted by ferry {o['samples'][-1]['target_errors'] - o['samples'][0]['target_errors']:.0f}; "
              f"daemon RSS max {x['rss_max_mb']:.0f} MB, VmHWM {x['hwm_mb']:.0f} MB")
        rc = rc or (1 if x["lost"] else 0)
        if x["restarted"]:
            print(f"WARNING: {', '.join(x['restarted'])} restarted during phase 2 (not by this benchmark: "
                  f"another test run?): these figures are not valid")
            rc = rc or 3
    return rc


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("phase")
    p.add_argument("--name", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--src-coll", required=True)
    p.add_argument("--dst-coll", required=True)
    p.add_argument("--first-id", type=int, required=True)
    p.add_argument("--marker-base", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--outage-mode", choices=["none", "gate", "restart"], default="none")
    p.add_argument("--outage-at", type=float, default=10)
    p.add_argument("--outage-seconds", type=float, default=20)
    p.add_argument("--after", type=float, default=30)
    p.add_argument("--gate-pid", type=int, default=0)
    p.add_argument("--repo", default=".")
    p.add_argument("--ferry", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--env-dir", required=True)
    p.add_argument("--marker-ms", type=float, default=200)
    p.add_argument("--poll-ms", type=float, default=50)
    p.add_argument("--consistency", choices=["Eventually", "Strong", "Bounded", "Session"], default="Eventually")
    p.add_argument("--drain-timeout", type=float, default=180)
    p.add_argument("--writer-threads", type=int, default=4)
    r = sub.add_parser("report")
    r.add_argument("files", nargs="+")
    r.add_argument("--sink")
    c = sub.add_parser("compare")
    c.add_argument("dirs", nargs="+")
    a = ap.parse_args()
    if a.cmd == "phase":
        if a.outage_mode == "gate" and not a.gate_pid:
            ap.error("--outage-mode gate needs --gate-pid")
        sys.exit(phase(a))
    if a.cmd == "compare":
        sys.exit(compare(a))
    sys.exit(report(a))


if __name__ == "__main__":
    main()
