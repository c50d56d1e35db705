"""Interop check of XEP-0016 privacy lists with slixmpp's xep_0016 stanzas (a client library
nobody here wrote: its XML for lists and items, its parsing of the server's answers).

Two clients log in over STARTTLS (with SCRAM-SHA-256, or the library's default choice; see
common.py) on different shards and send available presence. Alice has no lists; she writes
`no-bob` (deny Bob's messages, `<message/>` only, then allow everything), reads it back,
activates it: Bob's message comes back `service-unavailable`, while her own message to Bob
(outbound, not covered by a `<message/>` item) and Bob's IQ (not covered either) go through.
Making the list her default, declining the active list, and declining the default each take
effect at once; an unknown list is `item-not-found`; removing the list leaves no lists.
Exit status 0 means every step was seen to work.

The commands of slixmpp's xep_0016 plugin return nothing in 1.8 (Debian 12) for some
requests, so the script builds each IQ with the plugin's stanza classes and sends it itself.
"""

import asyncio

import slixmpp.exceptions

import common

NS = "jabber:iq:privacy"


class Client(common.Client):
    def __init__(self, jid, password, host, port, cert, mech):
        plugins = ("xep_0030", "xep_0016", "xep_0199")
        super().__init__(jid, password, host, port, cert, mech, plugins)
        self.inbox = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("message_error", lambda m: self.errors.put_nowait(m))

    async def on_online(self):
        self.send_presence()


async def privacy(client, ty, fill):
    """Send `<iq type=ty><query xmlns='jabber:iq:privacy'/></iq>` filled by `fill(query)`;
    the answer (an error raises slixmpp's IqError)."""
    iq = client.Iq()
    iq["type"] = ty
    fill(iq["privacy"])
    return await iq.send(timeout=10)


async def expect_error(client, ty, fill, condition):
    try:
        answer = await privacy(client, ty, fill)
    except slixmpp.exceptions.IqError as e:
        got = e.iq["error"]["condition"]
        assert got == condition, f"expected <{condition}/>, got <{got}/>: {e.iq}"
        return
    raise AssertionError(f"expected <{condition}/>, got a result: {answer}")


def nothing(_query):
    """An empty query: the get of names (PRIV-02)."""


def named(child, name=None):
    """A query with `<child name=name/>` (`active`, `default`; no name: decline)."""

    def fill(query):
        query.enable(child)
        if name:
            query[child]["name"] = name

    return fill


def the_list(name):
    """A query with an empty `<list name=name/>` (get it; in a set, remove it)."""
    return lambda query: query.add_list(name)


def names(answer):
    """(active, default, list names) of a privacy get result."""
    q = answer.xml.find("{%s}query" % NS)
    assert q is not None, answer
    active, default = q.find("{%s}active" % NS), q.find("{%s}default" % NS)
    return (
        None if active is None else active.attrib.get("name"),
        None if default is None else default.attrib.get("name"),
        sorted(l.attrib["name"] for l in q.findall("{%s}list" % NS)),
    )


def ping_of(client, to):
    return client.plugin["xep_0199"].ping(jid=to, timeout=10)


async def refused(a, b, alice):
    """Bob's message to Alice comes back `service-unavailable`, from Alice."""
    mid = common.send(b, alice, "refused?")
    err = await common.wait_for(b.errors, lambda m: m["id"] == mid, "the error for Bob's message")
    assert err["error"]["condition"] == "service-unavailable", err
    assert err["from"].bare == alice, err["from"]


async def delivered(a, b, alice, body):
    common.send(b, alice, body)

    def arrived(m):
        assert m["body"] != "refused?", "a message the list refused was delivered"
        return m["body"] == body

    msg = await common.wait_for(a.inbox, arrived, f"Bob's message {body!r}")
    assert msg["from"].bare == b.boundjid.bare, msg["from"]


async def main(host, port, cert, alice, bob, pa, pb, mech):
    a, b = await common.log_in(Client, host, port, cert, mech, (alice, pa), (bob, pb))
    # Both available, as the server sees it: a ping round trip after the presence.
    for c in (a, b):
        await ping_of(c, c.boundjid.domain)

    # PRIV-02: no lists, no active, no default.
    assert names(await privacy(a, "get", nothing)) == (None, None, []), "lists at start"

    # PRIV-07, PRIV-03: create a list (deny Bob's messages, only <message/>, then allow the
    # rest) and read it back in order.
    def no_bob(q):
        lst = q.add_list("no-bob")
        lst.add_item(bob, "deny", "1", itype="jid", message=True)
        lst.add_item(None, "allow", "2")

    await privacy(a, "set", no_bob)
    got = await privacy(a, "get", the_list("no-bob"))
    items = got["privacy"]["list"]["items"]
    assert [(i["order"], i["action"], i["type"], i["value"], i["message"]) for i in items] == [
        ("1", "deny", "jid", bob, True),
        ("2", "allow", "", "", False),
    ], got

    # PRIV-08, PRIV-14, PRIV-16: activate it; Bob's message is refused, the rest goes through.
    await privacy(a, "set", named("active", "no-bob"))
    assert names(await privacy(a, "get", nothing)) == ("no-bob", None, ["no-bob"])
    await refused(a, b, alice)
    await ping_of(b, a.boundjid.full)  # an IQ: no <iq/> item, allowed
    common.send(a, bob, "from alice")  # outbound: <message/> items are inbound only
    await common.wait_for(b.inbox, lambda m: m["body"] == "from alice", "Alice's message at Bob")

    # PRIV-09: the same list as default; PRIV-08: decline the active list; PRIV-11: the
    # default decides for a session without an active list.
    await privacy(a, "set", named("default", "no-bob"))
    await privacy(a, "set", named("active"))
    assert names(await privacy(a, "get", nothing)) == (None, "no-bob", ["no-bob"])
    await refused(a, b, alice)

    # PRIV-09: decline the default: nothing decides, Bob's next message arrives.
    await privacy(a, "set", named("default"))
    assert names(await privacy(a, "get", nothing)) == (None, None, ["no-bob"])
    await delivered(a, b, alice, "hello again")

    # PRIV-03, PRIV-08: unknown lists.
    await expect_error(a, "get", the_list("nonexistent"), "item-not-found")
    await expect_error(a, "set", named("active", "nonexistent"), "item-not-found")

    # PRIV-10: an empty list removes it.
    await privacy(a, "set", the_list("no-bob"))
    assert names(await privacy(a, "get", nothing)) == (None, None, []), "list not removed"
    await delivered(a, b, alice, "still there")

    await common.finish("privacy lists created, read, activated, made default, declined, removed", a, b)


if __name__ == "__main__":
    common.script(main)
