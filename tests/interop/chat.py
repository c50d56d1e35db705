"""Interop check with slixmpp (a client library nobody here wrote).

Two clients log in over STARTTLS with SCRAM-SHA-256, exchange messages both ways, and ping
the server (XEP-0199). The server is started by the Rust test that runs this script; exit
status 0 means every step was seen to work.
"""

import asyncio
import logging
import ssl
import sys

import slixmpp


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, host, port, cert):
        super().__init__(jid, password)
        self.target = (host, port)
        self.ca_certs = cert
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0030")
        self.plugin["feature_mechanisms"].use_mech = "SCRAM-SHA-256"
        self.online = asyncio.get_event_loop().create_future()
        self.inbox = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", self.on_failed)

    async def on_start(self, _event):
        self.send_presence()
        if not self.online.done():
            self.online.set_result(True)

    def on_failed(self, _event):
        if not self.online.done():
            self.online.set_exception(RuntimeError(f"{self.boundjid}: authentication failed"))

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.inbox.put_nowait(msg)

    def start(self):
        # STARTTLS is mandatory on our plain port; slixmpp negotiates it when offered.
        self.connect(self.target[0], self.target[1])


async def main(host, port, cert, alice, bob, password_a, password_b):
    a = Client(alice, password_a, host, port, cert)
    b = Client(bob, password_b, host, port, cert)
    a.start()
    b.start()
    await asyncio.wait_for(asyncio.gather(a.online, b.online), 20)

    mech_a = a.plugin["feature_mechanisms"].mech.name if a.plugin["feature_mechanisms"].mech else None
    assert mech_a == "SCRAM-SHA-256", f"mechanism used: {mech_a}"
    for c in (a, b):
        assert isinstance(c.socket, (ssl.SSLSocket, ssl.SSLObject)), "not over TLS"

    assert str(a.boundjid.bare) == alice, a.boundjid
    a.send_message(mto=bob, mbody="hello from slixmpp", mtype="chat")
    msg = await asyncio.wait_for(b.inbox.get(), 10)
    assert msg["body"] == "hello from slixmpp", msg
    assert msg["from"].bare == alice, msg["from"]
    assert msg["from"].resource == a.boundjid.resource, msg["from"]

    b.send_message(mto=a.boundjid.full, mbody="héllo back ☃", mtype="chat")
    msg = await asyncio.wait_for(a.inbox.get(), 10)
    assert msg["body"] == "héllo back ☃", msg

    rtt = await a.plugin["xep_0199"].ping(jid=a.boundjid.domain, timeout=10)
    assert rtt is not None and rtt >= 0, rtt

    info = await a.plugin["xep_0030"].get_info(jid=a.boundjid.domain, timeout=10)
    features = info["disco_info"]["features"]
    assert "urn:xmpp:ping" in features, features

    a.disconnect()
    b.disconnect()
    await asyncio.sleep(0.2)
    print("interop ok: SCRAM-SHA-256 over STARTTLS, messages both ways, ping, disco")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    host, port, cert, alice, bob, pa, pb = sys.argv[1:8]
    try:
        asyncio.run(asyncio.wait_for(main(host, int(port), cert, alice, bob, pa, pb), 60))
    except Exception as e:  # report and fail
        print(f"interop FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
