#!/usr/bin/env python3
"""Hold N authenticated, bound, available client sessions open against a running xmppd and
report the server's resident memory per session (from /proc/PID/status).

usage: measure_idle.py PID HOST PORT N USER_PREFIX PASSWORD [--tls CERT]

Accounts USER_PREFIX0..USER_PREFIX{N-1}@localhost must exist with PASSWORD. Without --tls the
server must run with --allow-plain-without-tls. A rough instrument until the load generator
(loadtest/) exists; it uses SASL PLAIN to keep the client cheap.
"""
import asyncio, base64, re, ssl, sys, time

HDR = (b"<stream:stream to='localhost' xmlns='jabber:client' "
       b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def until(reader, pattern, buf=b""):
    while not re.search(pattern, buf):
        chunk = await reader.read(65536)
        if not chunk:
            raise RuntimeError(f"closed while waiting for {pattern!r}: {buf[-200:]!r}")
        buf += chunk
    return buf


READY = 0


async def session(host, port, user, password, ctx, hold):
    global READY
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(HDR)
    await until(reader, rb"</stream:features>")
    if ctx is not None:
        writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await until(reader, rb"<proceed")
        await writer.start_tls(ctx, server_hostname="localhost")
        writer.write(HDR)
        await until(reader, rb"</stream:features>")
    cred = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    writer.write(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + b"</auth>")
    await until(reader, rb"<success")
    writer.write(HDR)
    await until(reader, rb"</stream:features>")
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq><presence/>")
    await until(reader, rb"<presence")
    READY += 1
    await hold.wait()
    writer.close()


async def main():
    pid, host, port, n, prefix, password = sys.argv[1:7]
    port, n = int(port), int(n)
    ctx = None
    if "--tls" in sys.argv:
        ctx = ssl.create_default_context(cafile=sys.argv[sys.argv.index("--tls") + 1])
    before = rss_kib(pid)
    hold = asyncio.Event()
    tasks = []
    t0 = time.time()
    for i in range(n):
        tasks.append(asyncio.create_task(session(host, port, f"{prefix}{i}", password, ctx, hold)))
        if len(tasks) % 200 == 0:
            await asyncio.sleep(0.05)
    # Wait until every session is bound and available.
    while READY < n:
        await asyncio.sleep(0.2)
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()
    print(f"logged in {n} sessions in {time.time() - t0:.1f}s", flush=True)
    await asyncio.sleep(2)
    after = rss_kib(pid)
    print(f"sessions={n} tls={ctx is not None} rss_before_kib={before} rss_after_kib={after} "
          f"per_session_bytes={(after - before) * 1024 / n:.0f}")
    hold.set()
    await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
