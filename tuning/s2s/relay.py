#!/usr/bin/env python3
"""A TCP relay that delays every chunk by a fixed time and logs what crosses it.

    relay.py --delay-ms D --log FILE LISTEN_IP:PORT=TARGET_IP:PORT [...]

Used by tuning/s2s/stream_open.sh to count the round trips of opening a server-to-server
stream: the servers' routes (xmppd --s2s-route) or their hosts file (Prosody, ejabberd) point
at the relay, which forwards to the real peer after D ms in each direction, so every round
trip on the critical path costs 2·D more. The log has one line per chunk: `time_s conn dir
bytes` (dir `>` from the connecting side, `<` back), for counting flights per connection.
The TCP handshake is not delayed (the relay accepts at once and connects to the target in
parallel); TLS records cross it as they are (it never looks inside).
"""
import argparse
import asyncio
import itertools
import sys
import time

T0 = time.monotonic()
conn_ids = itertools.count(1)


async def pump(reader, writer, delay, log, cid, direction):
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except OSError:
            pass

    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(65536)
            now = time.monotonic()
            if not data:
                break
            log.write(f"{now - T0:.6f} {cid} {direction} {len(data)}\n")
            log.flush()
            await queue.put((now + delay, data))
    except OSError:
        pass
    await queue.put((0, None))
    try:
        await task
    except OSError:
        pass


async def handle(client_r, client_w, target, delay, log):
    cid = next(conn_ids)
    host, port = target
    log.write(f"{time.monotonic() - T0:.6f} {cid} open {host}:{port}\n")
    try:
        up_r, up_w = await asyncio.open_connection(host, port)
    except OSError as e:
        log.write(f"{time.monotonic() - T0:.6f} {cid} fail {e}\n")
        client_w.close()
        return
    await asyncio.gather(
        pump(client_r, up_w, delay, log, cid, ">"),
        pump(up_r, client_w, delay, log, cid, "<"),
    )
    log.write(f"{time.monotonic() - T0:.6f} {cid} close\n")
    log.flush()
    client_w.close()
    up_w.close()


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--log", required=True)
    ap.add_argument("routes", nargs="+", help="LISTEN_IP:PORT=TARGET_IP:PORT")
    a = ap.parse_args()
    log = open(a.log, "a")
    servers = []
    for r in a.routes:
        listen, target = r.split("=")
        lh, lp = addr(listen)
        tgt = addr(target)
        servers.append(
            await asyncio.start_server(
                lambda cr, cw, t=tgt: handle(cr, cw, t, a.delay_ms / 1000.0, log), lh, lp
            )
        )
    print("relay ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
