"""Interop check with slixmpp (a client library nobody here wrote).

Two clients log in over STARTTLS (with SCRAM-SHA-256, or the library's default choice; see
common.py), exchange messages both ways, and ping the server (XEP-0199). The server is started
by the Rust test that runs this script; exit status 0 means every step was seen to work.
"""

import asyncio
import ssl

import common


class Client(common.Client):
    def __init__(self, jid, password, host, port, cert, mech):
        super().__init__(jid, password, host, port, cert, mech, ("xep_0199", "xep_0030"))
        self.inbox = asyncio.Queue()
        self.add_event_handler("message", self.on_message)

    async def on_online(self):
        self.send_presence()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.inbox.put_nowait(msg)


async def main(host, port, cert, alice, bob, password_a, password_b, mech):
    a, b = await common.log_in(Client, host, port, cert, mech, (alice, password_a), (bob, password_b))
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

    await common.finish(f"{a.mechanism()} over STARTTLS, messages both ways, ping, disco", a, b)


if __name__ == "__main__":
    common.script(main, timeout=60)
