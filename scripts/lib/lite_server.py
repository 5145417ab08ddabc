#!/usr/bin/env python3
"""Run the Milvus Lite 3.x gRPC adapter in the foreground (started by scripts/testenv).

usage: lite_server.py DATA_DIR HOST PORT

milvus_lite.adapter.grpc.server.run_server(data_dir, host, port) blocks and shuts down
cleanly (drains requests, closes the DB, releases the data_dir LOCK) on KeyboardInterrupt
only. `testenv down` sends SIGTERM, so turn SIGTERM into KeyboardInterrupt.
"""
import signal
import sys


def _term(_signum, _frame):
    raise KeyboardInterrupt


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    data_dir, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    signal.signal(signal.SIGTERM, _term)
    from milvus_lite.adapter.grpc.server import run_server  # noqa: WPS433
    run_server(data_dir, host, port)


if __name__ == "__main__":
    main()
