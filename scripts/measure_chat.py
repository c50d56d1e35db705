#!/usr/bin/env python3
"""Rough one-to-one message rate through a running xmppd: one sender pipelines N chat messages
to one receiver; reports messages per second and the server's CPU time per message (from
/proc/PID/stat). A stand-in until the load generator (loadtest/) exists.

usage: measure_chat.py PID HOST PORT SENDER RECEIVER PASSWORD N [--window W]

Both accounts must exist with PASSWORD; the server must run with --allow-plain-without-tls.
At most W messages are in flight (default 2000), so the receiver's rate is measured, not the
kernel's buffering.
"""
import base64, os, re, socket, sys, threading, time

HDR = (b"<stream:stream to='localhost' xmlns='jabber:client' "
       b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def login(host, port, user, password, resource):
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""

    def until(p):
        nonlocal buf
        while not re.search(p, buf):
            c = s.recv(65536)
            if not c:
                raise RuntimeError("closed")
            buf += c
        buf = b""

    s.sendall(HDR)
    until(rb"</stream:features>")
    cred = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    s.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + cred + b"</auth>")
    until(rb"<success")
    s.sendall(HDR)
    until(rb"</stream:features>")
    s.sendall(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>"
              + resource.encode() + b"</resource></bind></iq><presence/>")
    until(rb"<presence")
    return s


def main():
    pid, host, port, sender, receiver, password, n = sys.argv[1:8]
    port, n = int(port), int(n)
    window = int(sys.argv[sys.argv.index("--window") + 1]) if "--window" in sys.argv else 2000
    rx = login(host, port, receiver, password, "r")
    tx = login(host, port, sender, password, "s")
    msg = (f"<message to='{receiver}@localhost/r' type='chat'><body>hello, this is a "
           f"typical short chat line</body></message>").encode()
    received = 0
    cv = threading.Condition()

    def reader():
        nonlocal received
        tail = b""
        while received < n:
            c = rx.recv(262144)
            if not c:
                break
            data = tail + c
            k = data.count(b"</message>")
            tail = data[data.rfind(b"</message>") + 10:] if k else data[-16:]
            with cv:
                received += k
                cv.notify()

    t = threading.Thread(target=reader)
    t.start()
    cpu0, t0 = cpu_seconds(pid), time.time()
    sent = 0
    batch = 100
    while sent < n:
        with cv:
            while sent - received >= window:
                cv.wait()
        k = min(batch, n - sent)
        tx.sendall(msg * k)
        sent += k
    t.join()
    dt, cpu = time.time() - t0, cpu_seconds(pid) - cpu0
    print(f"messages={received} seconds={dt:.2f} rate={received / dt:.0f}/s "
          f"server_cpu_us_per_msg={cpu / received * 1e6:.1f}")


main()
