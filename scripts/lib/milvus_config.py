#!/usr/bin/env python3
"""Render configs/milvus.yaml (+ an embedded-etcd yaml) for one Milvus 2.3.5 standalone.

Why this exists: the PyPI `milvus==2.3.5` wheel ships a config template
(`milvus/data/config.yaml.template`) with `{{ key(type): default }}` placeholders that its
own wrapper (`milvus.MilvusServerConfig`) fills in. The wrapper picks *free* ports itself and
cannot express what we need (Kafka WAL, an embedded etcd on other ports, component IPs on
loopback), so we reproduce its rendering here and then patch dotted keys line by line.
No YAML library: the venv does not have one and a line editor keeps the template's comments.

Writes <base-dir>/configs/milvus.yaml and <base-dir>/configs/embed-etcd.yaml.
"""
import argparse
import os
import re
import sys

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*(?:\([a-z]+\))?\s*(?::\s*([^}]*?))?\s*\}\}")
KEY_LINE = re.compile(r"^( *)([A-Za-z0-9_]+):(.*)$")


def render_placeholders(text, values):
    """Replace every {{ name(type): default }} with values[name] (or its default)."""
    def repl(m):
        name, default = m.group(1), m.group(2)
        if name in values:
            return str(values[name])
        if default is None:
            sys.exit(f"milvus_config: placeholder {name!r} has no default and no value")
        return default.strip()
    return PLACEHOLDER.sub(repl, text)


def set_key(lines, dotted, value):
    """Set `a.b.c: value` in a YAML file kept as lines (2-space indentation).

    Replaces the existing scalar (keeping a trailing comment), or inserts the missing
    tail of the path right under the deepest existing parent.
    """
    parts = dotted.split(".")
    stack = []          # (indent, key) of the current path
    found_at = {}       # depth -> line index of the matching key on the wanted path
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        m = KEY_LINE.match(line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        path = [k for _, k in stack]
        depth = len(path)
        if depth <= len(parts) and path == parts[:depth]:
            found_at[depth] = i
            if depth == len(parts):
                rest = m.group(3)
                comment = ""
                if "#" in rest:
                    comment = " #" + rest.split("#", 1)[1]
                lines[i] = f"{m.group(1)}{key}: {value}{comment}"
                return
    # Not present: insert below the deepest existing ancestor.
    depth = max(found_at) if found_at else 0
    if depth == 0:
        insert_at = len(lines)
    else:
        insert_at = found_at[depth] + 1
    new = []
    for d in range(depth, len(parts)):
        ind = "  " * d
        if d == len(parts) - 1:
            new.append(f"{ind}{parts[d]}: {value}")
        else:
            new.append(f"{ind}{parts[d]}:")
    lines[insert_at:insert_at] = new


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", required=True, help="milvus/data/config.yaml.template of the wheel")
    ap.add_argument("--base-dir", required=True, help="instance dir; configs/ and data/ go here")
    ap.add_argument("--log-dir", required=True, help="where the etcd log file goes")
    ap.add_argument("--name", required=True, help="instance name, used for log file names")
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--proxy-internal-port", type=int, required=True)
    ap.add_argument("--root-coord-port", type=int, required=True)
    ap.add_argument("--query-coord-port", type=int, required=True)
    ap.add_argument("--query-node-port", type=int, required=True)
    ap.add_argument("--index-coord-port", type=int, required=True)
    ap.add_argument("--index-node-port", type=int, required=True)
    ap.add_argument("--data-coord-port", type=int, required=True)
    ap.add_argument("--data-node-port", type=int, required=True)
    ap.add_argument("--natsmq-port", type=int, required=True)
    ap.add_argument("--etcd-client-port", type=int, required=True)
    ap.add_argument("--etcd-peer-port", type=int, required=True)
    ap.add_argument("--mq", choices=["kafka", "rocksmq"], required=True)
    ap.add_argument("--kafka-brokers", default="", help="host:port list when --mq kafka")
    a = ap.parse_args()

    base = os.path.abspath(a.base_dir)
    data = os.path.join(base, "data")
    configs = os.path.join(base, "configs")
    etcd_log = os.path.join(os.path.abspath(a.log_dir), f"{a.name}-etcd.log")
    etcd_yaml = os.path.join(configs, "embed-etcd.yaml")

    # Same keys the wheel's wrapper resolves (see MilvusServerConfig.resolve_storage and
    # the *_port placeholders), but with fixed ports and every path inside this instance.
    placeholders = {
        "etcd_port": a.etcd_client_port,
        "etcd_log_level": "warn",
        "etcd_log_path": etcd_log,
        "etcd_data_dir": os.path.join(data, "etcd.data"),
        "local_storage_dir": data,               # binlogs land under here after a flush
        "rocksmq_data_dir": os.path.join(data, "rocksmq"),
        "root_coord_port": a.root_coord_port,
        "proxy_port": a.proxy_port,
        "proxy_internal_port": a.proxy_internal_port,
        "query_coord_port": a.query_coord_port,
        "query_node_port": a.query_node_port,
        "index_coord_port": a.index_coord_port,
        "index_node_port": a.index_node_port,
        "data_coord_port": a.data_coord_port,
        "data_node_port": a.data_node_port,
        # "" = no milvus.log file: everything goes to stdout, which testenv redirects
        # into target/testenv/logs/<name>.log (one log per server).
        "system_log_path": '""',
    }
    # Component addresses registered in etcd: loopback, not "first unicast address".
    sets = {f"{c}.ip": "127.0.0.1" for c in (
        "rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")}
    # The embedded etcd reads its listen/advertise URLs only from an etcd config file
    # (pkg/util/etcd InitEtcdServer -> embed.ConfigFromFile(etcd.config.path)).
    sets["etcd.config.path"] = etcd_yaml
    sets["etcd.endpoints"] = f"127.0.0.1:{a.etcd_client_port}"
    sets["natsmq.server.port"] = a.natsmq_port
    sets["natsmq.server.storeDir"] = os.path.join(data, "natsmq")
    sets["natsmq.server.monitor.logFile"] = os.path.join(os.path.abspath(a.log_dir), f"{a.name}-nats.log")
    # Default graceful stop is 1800 s; `testenv down` SIGKILLs after its own timeout anyway.
    sets["common.gracefulStopTimeout"] = 10
    sets["mq.type"] = a.mq
    append = ""
    if a.mq == "kafka":
        if not a.kafka_brokers:
            sys.exit("milvus_config: --mq kafka needs --kafka-brokers")
        # The template only has a commented-out kafka section; add a real one.
        append = (
            "# Added by scripts/lib/milvus_config.py: WAL on a Kafka-protocol broker (tansu).\n"
            "kafka:\n"
            f"  brokerList: {a.kafka_brokers}\n"
            "  saslUsername:\n"
            "  saslPassword:\n"
            "  saslMechanisms: PLAIN\n"
            "  securityProtocol: PLAINTEXT\n"
            "  readTimeout: 10\n"
        )

    with open(a.template, encoding="utf-8") as f:
        text = f.read()
    text = render_placeholders(text, placeholders)
    lines = text.split("\n")
    for key, val in sets.items():
        set_key(lines, key, val)
    text = "\n".join(lines)
    if append:
        text = text.rstrip("\n") + "\n\n" + append
    os.makedirs(configs, exist_ok=True)
    with open(os.path.join(configs, "milvus.yaml"), "w", encoding="utf-8") as f:
        f.write(text)

    # The C++ half (segcore, knowhere) reads configs/glog.conf. Without that file the binary
    # exits with status 1 and prints nothing (trap seen here): always write it. Its logs go
    # to target/testenv/logs/<name>-glog/ instead of a relative logs/ under the instance.
    glog_dir = os.path.join(os.path.abspath(a.log_dir), f"{a.name}-glog")
    os.makedirs(glog_dir, exist_ok=True)
    glog_src = os.path.join(os.path.dirname(os.path.abspath(a.template)), "glog.conf")
    with open(glog_src, encoding="utf-8") as f:
        glog = f.read()
    glog = re.sub(r"^--log_dir=.*$", f"--log_dir={glog_dir}/", glog, flags=re.M)
    with open(os.path.join(configs, "glog.conf"), "w", encoding="utf-8") as f:
        f.write(glog)

    c, p = a.etcd_client_port, a.etcd_peer_port
    with open(etcd_yaml, "w", encoding="utf-8") as f:
        f.write(
            f"# embedded etcd of Milvus instance {a.name!r}; written by scripts/lib/milvus_config.py\n"
            f"name: {a.name}\n"
            f"listen-client-urls: http://127.0.0.1:{c}\n"
            f"advertise-client-urls: http://127.0.0.1:{c}\n"
            f"listen-peer-urls: http://127.0.0.1:{p}\n"
            f"initial-advertise-peer-urls: http://127.0.0.1:{p}\n"
            f"initial-cluster: {a.name}=http://127.0.0.1:{p}\n"
            "initial-cluster-state: new\n"
            f"initial-cluster-token: ferry-testenv-{a.name}\n"
            # Milvus 2.3.5 ignores etcd.log.path for the embedded server (its JSON log lands
            # on stdout, mixed into the Milvus log); route it to its own file instead.
            f"log-outputs: [{etcd_log}]\n"
            "log-level: warn\n"
        )


if __name__ == "__main__":
    main()
