#!/usr/bin/env python3
"""What opening a server-to-server stream costs: CPU on both servers and time.

    stream_open.py --host IP --port P --domain a.test --user user1 --password pass \
        --pids PID_A,PID_B --targets d1.test,d2.test,... [--json]

Logs one client into server A (plaintext c2s, SASL PLAIN), then for every target domain
(served by server B, which A has never talked to): sends an XEP-0199 ping to the domain and
waits for its answer (result or error: either comes back over B's stream to A), then pings it
again over the streams now open. Around each ping it reads both servers' CPU time from
/proc/PID/task/*/schedstat (ns; every thread) so that
    first ping  = stream set-up in both directions (A->B, and B->A which B needs to answer and,
                  for dialback, to verify A's key) + one relayed round trip;
    second ping = one relayed round trip on open streams;
and the difference is the cost of opening the streams. Prints per-target lines and the medians.
"""
import argparse
import base64
import json
import os
import re
import socket
import statistics
import time


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


class Client:
    def __init__(self, host, port, domain, user, password):
        self.s = socket.create_connection((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.domain = domain
        self.open()
        self.read_until(b"</stream:features>")
        tok = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{tok}</auth>")
        got = self.read_until(b"success", b"failure")
        if b"failure" in got:
            raise SystemExit(f"login failed: {got!r}")
        self.open()
        self.read_until(b"</stream:features>")
        self.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  "<resource>so</resource></bind></iq>")
        self.read_until(b"</iq>")
        self.send("<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        self.read_until(b"</iq>", b"/>")
        self.buf = b""

    def open(self):
        self.send(f"<?xml version='1.0'?><stream:stream to='{self.domain}' version='1.0' "
                  "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")

    def send(self, s):
        self.s.sendall(s.encode())

    def read_until(self, *marks, timeout=60):
        self.s.settimeout(timeout)
        while not any(m in self.buf for m in marks):
            d = self.s.recv(65536)
            if not d:
                raise SystemExit(f"closed; got {self.buf!r}")
            self.buf += d
        out, self.buf = self.buf, b""
        return out

    def ping(self, to, ident, timeout=60):
        """Sends a ping to `to`; returns (seconds, answer type) when its answer arrives."""
        t0 = time.monotonic()
        self.send(f"<iq type='get' to='{to}' id='{ident}'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.s.settimeout(timeout)
        pat = re.compile(rb"<iq[^>]*id=['\"]" + re.escape(ident.encode()) + rb"['\"][^>]*>")
        while True:
            m = pat.search(self.buf)
            if m:
                tag = m.group(0)
                self.buf = self.buf[m.end():]
                ty = re.search(rb"type=['\"](\w+)", tag)
                return time.monotonic() - t0, ty.group(1).decode() if ty else "?"
            d = self.s.recv(65536)
            if not d:
                raise SystemExit("closed while waiting for a ping answer")
            self.buf += d


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--user", default="user1")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--pids", required=True, help="PID_A,PID_B")
    ap.add_argument("--targets", required=True, help="comma-separated remote domains")
    ap.add_argument("--settle", type=float, default=0.3, help="seconds between pings")
    ap.add_argument("--label", default="server")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    pids = [int(p) for p in a.pids.split(",")]
    c = Client(a.host, a.port, a.domain, a.user, a.password)
    rows = []
    for k, dom in enumerate(a.targets.split(",")):
        row = {"target": dom}
        for phase in ("first", "second"):
            time.sleep(a.settle)
            before = [cpu_ns(p) for p in pids]
            secs, ty = c.ping(dom, f"{phase}{k}")
            time.sleep(a.settle)  # let the tail of the work (closing handshakes, acks) finish
            after = [cpu_ns(p) for p in pids]
            d = [(y - x) / 1000.0 for x, y in zip(before, after)]
            row[phase] = {"ms": round(secs * 1000, 3), "type": ty,
                          "cpu_a_us": round(d[0], 1), "cpu_b_us": round(d[1], 1)}
        rows.append(row)
        f, s = row["first"], row["second"]
        print(f"{dom}: first {f['ms']:.1f} ms ({f['type']}) A {f['cpu_a_us']:.0f} µs B "
              f"{f['cpu_b_us']:.0f} µs; second {s['ms']:.2f} ms ({s['type']}) A "
              f"{s['cpu_a_us']:.0f} µs B {s['cpu_b_us']:.0f} µs", flush=True)

    def med(phase, key):
        return statistics.median(r[phase][key] for r in rows)

    summary = {
        "label": a.label,
        "targets": len(rows),
        "first_ms": med("first", "ms"),
        "second_ms": med("second", "ms"),
        "open_cpu_a_us": statistics.median(
            r["first"]["cpu_a_us"] - r["second"]["cpu_a_us"] for r in rows),
        "open_cpu_b_us": statistics.median(
            r["first"]["cpu_b_us"] - r["second"]["cpu_b_us"] for r in rows),
        "open_cpu_sum_us": statistics.median(
            r["first"]["cpu_a_us"] + r["first"]["cpu_b_us"]
            - r["second"]["cpu_a_us"] - r["second"]["cpu_b_us"] for r in rows),
        "answer_types": sorted({r["first"]["type"] for r in rows}),
    }
    print(f"median over {len(rows)} domains: first ping {summary['first_ms']:.1f} ms, "
          f"second {summary['second_ms']:.2f} ms; stream open CPU A {summary['open_cpu_a_us']:.0f} "
          f"µs + B {summary['open_cpu_b_us']:.0f} µs = {summary['open_cpu_sum_us']:.0f} µs")
    if a.json:
        print(json.dumps({"summary": summary, "rows": rows}))


if __name__ == "__main__":
    main()
