"""Interop check of XEP-0191 blocking with slixmpp's xep_0191 plugin (a client library nobody
here wrote).

Two clients log in over STARTTLS (with SCRAM-SHA-256, or the library's default choice; see
common.py) and send available presence. Alice asks for her (empty) blocklist, blocks Bob with
the plugin's block() and sees the server's push; Bob's message to her comes back as a
<service-unavailable/> error and her message to him as <not-acceptable/> with XEP-0191's
<blocked/>; her blocklist shows Bob; she unblocks him (push again) and Bob's next message
arrives. Exit status 0 means every step was seen to work.

The plugin differs between the slixmpps the tests run: the blocklist's items are a set of
JIDs in 1.8 (Debian 12) and child elements later, and a command may return a future or a
coroutine. The script reads the XML itself and awaits whatever it gets.
"""

import asyncio

import common

NS = "urn:xmpp:blocking"
NS_ERRORS = "urn:xmpp:blocking:errors"


class Client(common.Client):
    def __init__(self, jid, password, host, port, cert, mech):
        plugins = ("xep_0030", "xep_0191", "xep_0199")
        super().__init__(jid, password, host, port, cert, mech, plugins)
        self.inbox = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.pushes = asyncio.Queue()
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("message_error", lambda m: self.errors.put_nowait(m))
        self.add_event_handler("blocked", lambda iq: self.pushes.put_nowait(("block", iq)))
        self.add_event_handler("unblocked", lambda iq: self.pushes.put_nowait(("unblock", iq)))

    async def on_online(self):
        self.send_presence()


def items(iq, name):
    """The item JIDs (bare strings) of the <name xmlns='urn:xmpp:blocking'/> child of iq."""
    el = iq.xml.find("{%s}%s" % (NS, name))
    assert el is not None, f"no <{name}/> in {iq}"
    return {item.attrib.get("jid") for item in el.findall("{%s}item" % NS)}


async def blocked_jids(client):
    iq = await common.settle(client.plugin["xep_0191"].get_blocked(timeout=10))
    assert iq["type"] == "result", iq
    return items(iq, "blocklist")


async def main(host, port, cert, alice, bob, pa, pb, mech):
    a, b = await common.log_in(Client, host, port, cert, mech, (alice, pa), (bob, pb))
    # Both available, as the server sees it: a ping round trip after the presence.
    for c in (a, b):
        await c.plugin["xep_0199"].ping(jid=c.boundjid.domain, timeout=10)

    # Asking for the blocklist subscribes Alice's client to the pushes.
    assert await blocked_jids(a) == set(), "a fresh account's blocklist is not empty"

    # Block: a result, and the push the plugin turns into a "blocked" event.
    await common.settle(a.plugin["xep_0191"].block(bob, timeout=10))
    kind, push = await common.wait_for(a.pushes, lambda p: p[0] == "block", "the <block/> push")
    assert items(push, "block") == {bob}, push

    # Bob's message comes back as an error; Alice gets nothing.
    mid = common.send(b, alice, "are you there?")
    err = await common.wait_for(b.errors, lambda m: m["id"] == mid, "the error for Bob's message")
    assert err["error"]["condition"] == "service-unavailable", err
    assert err["from"].bare == alice, err["from"]

    # Alice's message to Bob is refused by her server with <blocked/>.
    mid = common.send(a, bob, "you should not get this")
    err = await common.wait_for(a.errors, lambda m: m["id"] == mid, "the error for Alice's message")
    assert err["error"]["condition"] == "not-acceptable", err
    assert err["error"].xml.find("{%s}blocked" % NS_ERRORS) is not None, err

    # The blocklist shows Bob.
    assert await blocked_jids(a) == {bob}, "Bob is not in the blocklist"

    # Unblock: a result, the push, and Bob's next message arrives.
    await common.settle(a.plugin["xep_0191"].unblock(bob, timeout=10))
    kind, push = await common.wait_for(a.pushes, lambda p: p[0] == "unblock", "the <unblock/> push")
    assert items(push, "unblock") == {bob}, push
    assert await blocked_jids(a) == set(), "the blocklist is not empty after unblocking"
    common.send(b, alice, "hello again")

    def hello_again(m):
        # Nothing of the blocked period came through before it.
        assert m["body"] != "are you there?", "a message sent while blocked was delivered"
        return m["body"] == "hello again"

    msg = await common.wait_for(a.inbox, hello_again, "Bob's message")
    assert msg["from"].bare == bob, msg["from"]
    while not b.inbox.empty():
        m = b.inbox.get_nowait()
        assert m["body"] != "you should not get this", "a message to a blocked JID went out"

    await common.finish("blocklist, block with push, refused both ways, unblock with push", a, b)


if __name__ == "__main__":
    common.script(main)
