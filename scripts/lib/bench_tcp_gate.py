#!/usr/bin/env python3
"""A TCP forwarder that can cut its upstream on a signal: a target outage for one client.

    bench_tcp_gate.py UPSTREAM_HOST:PORT PORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE once listening) and forwards every
connection to UPSTREAM byte for byte (gRPC over HTTP/2 passes through unchanged).

- SIGUSR1 closes the gate: the listening socket is closed (new connections are refused, as
  when the server process is down) and every open connection is reset.
- SIGUSR2 opens it again on the same port.
- SIGTERM/SIGINT exit.

scripts/bench-cdc points ferry's target at the gate, so it can make the target unreachable
for ferry alone: the shared test environment's target keeps serving everyone else (and the
benchmark's own checker, which reads the target directly).
"""
import asyncio
import os
import signal
import socket
import sys

upstream_host, upstream_port = sys.argv[1].rsplit(":", 1)
upstream_port = int(upstream_port)
port_file = sys.argv[2]

conns = set()  # writers of open connections (both directions)
server = None
port = 0


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.open_connection(upstream_host, upstream_port)
    except OSError:
        client_w.close()
        return
    for w in (client_w, up_w):
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.add(w)
    try:
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    finally:
        conns.discard(client_w)
        conns.discard(up_w)


async def open_gate():
    global server, port
    if server is not None:
        return
    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    port = server.sockets[0].getsockname()[1]


async def close_gate():
    global server
    if server is not None:
        server.close()
        await server.wait_closed()
        server = None
    for w in list(conns):
        sock = w.get_extra_info("socket")
        try:
            # RST rather than FIN: the peer sees the connection die at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        w.transport.abort()
    conns.clear()


async def main():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    await open_gate()
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{port}\n")
    os.replace(port_file + ".tmp", port_file)
    loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(close_gate()))
    loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(open_gate()))
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await close_gate()


asyncio.run(main())
