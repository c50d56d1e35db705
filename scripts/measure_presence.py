#!/usr/bin/env python3
"""Presence fan-out cost: one user with C contacts (all `both`, all online) changes presence N
times; reports deliveries per second and the server's CPU time per delivered presence (from
/proc/PID/stat). A stand-in until the load generator (loadtest/) exists.

usage: measure_presence.py PID HOST PORT USER_PREFIX PASSWORD C N

Accounts USER_PREFIX0 (the broadcaster) .. USER_PREFIX{C} must exist with PASSWORD; the server
must run with --allow-plain-without-tls. Subscriptions are set up by pre-approval.
"""
import asyncio, base64, os, re, sys, time

HDR = (b"<stream:stream to='localhost' xmlns='jabber:client' "
       b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Conn:
    def __init__(self, reader, writer):
        self.r, self.w, self.buf = reader, writer, b""

    async def until(self, pattern):
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return
            chunk = await self.r.read(65536)
            if not chunk:
                raise RuntimeError("closed")
            self.buf += chunk

    async def count(self, needle, n):
        """Wait until `needle` was seen `n` times (it may straddle reads)."""
        data = self.buf
        got = data.count(needle)
        while got < n:
            chunk = await self.r.read(262144)
            if not chunk:
                raise RuntimeError("closed")
            tail = data[-(len(needle) - 1):] if len(needle) > 1 else b""
            data = tail + chunk
            got += data.count(needle)
        self.buf = b""


async def login(host, port, user, password):
    r, w = await asyncio.open_connection(host, port)
    c = Conn(r, w)
    w.write(HDR)
    await c.until(rb"</stream:features>")
    cred = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    w.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + b"</auth>")
    await c.until(rb"<success")
    w.write(HDR)
    await c.until(rb"</stream:features>")
    w.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    await c.until(rb"</iq>")
    return c


async def main():
    pid, host, port, prefix, password, contacts, n = sys.argv[1:8]
    port, contacts, n = int(port), int(contacts), int(n)
    me = f"{prefix}0@localhost"
    user = await login(host, port, f"{prefix}0", password)
    peers = [await login(host, port, f"{prefix}{i}", password) for i in range(1, contacts + 1)]
    # Each contact pre-approves the user and the user subscribes: `from` on the contacts' side.
    for i, p in enumerate(peers, 1):
        p.w.write(f"<presence to='{me}' type='subscribed'/>".encode())
    await asyncio.sleep(0.5)
    for i in range(1, contacts + 1):
        user.w.write(f"<presence to='{prefix}{i}@localhost' type='subscribe'/>".encode())
        # ...and subscribe back so that the user's presence reaches them (`both`).
        user.w.write(f"<presence to='{prefix}{i}@localhost' type='subscribed'/>".encode())
    for i, p in enumerate(peers, 1):
        p.w.write(f"<presence to='{me}' type='subscribe'/>".encode())
    await asyncio.sleep(1.0)
    for p in peers:
        p.w.write(b"<presence/>")
    user.w.write(b"<presence/>")
    await asyncio.sleep(1.0)
    cpu0, t0 = cpu_seconds(pid), time.time()
    for k in range(n):
        show = b"away" if k % 2 else b"dnd"
        user.w.write(b"<presence><show>" + show + b"</show><status>status " + str(k).encode() + b"</status></presence>")
        if k % 50 == 49:
            await asyncio.gather(*(p.count(b"<status>status " + str(k).encode() + b"<", 1) for p in peers))
    if n % 50:
        await asyncio.gather(*(p.count(b"<status>status " + str(n - 1).encode() + b"<", 1) for p in peers))
    dt, cpu = time.time() - t0, cpu_seconds(pid) - cpu0
    deliveries = n * contacts
    print(f"contacts={contacts} changes={n} deliveries={deliveries} seconds={dt:.2f} "
          f"rate={deliveries / dt:.0f}/s server_cpu_us_per_delivery={cpu / deliveries * 1e6:.2f} "
          f"server_cpu_us_per_change={cpu / n * 1e6:.0f}")


asyncio.run(main())
