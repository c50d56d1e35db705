"""Interop check of the IM features with slixmpp (a client library nobody here wrote).

Two clients log in over STARTTLS (with SCRAM-SHA-256, or the library's default choice; see
common.py). Alice adds Bob to her roster and subscribes; Bob's client approves (slixmpp's
auto-authorize) and subscribes back; both see each other's presence. Alice publishes a vCard
that Bob reads. Bob goes offline, Alice sends him a message, and Bob's next session receives it
with a delay stamp. Exit status 0 means every step was seen to work.
"""

import asyncio

import common


class Client(common.Client):
    def __init__(self, jid, password, host, port, cert, mech):
        plugins = ("xep_0030", "xep_0054", "xep_0199", "xep_0203")
        super().__init__(jid, password, host, port, cert, mech, plugins)
        self.inbox = asyncio.Queue()
        self.available = asyncio.Queue()
        self.unavailable = asyncio.Queue()
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
        self.add_event_handler("presence_available", lambda p: self.available.put_nowait(p))
        self.add_event_handler("presence_unavailable", lambda p: self.unavailable.put_nowait(p))

    async def on_online(self):
        await self.get_roster()
        self.send_presence()


async def main(host, port, cert, alice, bob, pa, pb, mech):
    a, b = await common.log_in(Client, host, port, cert, mech, (alice, pa), (bob, pb))

    # Roster add with a name and a group, then the subscription handshake.
    await a.update_roster(bob, name="Bob", groups=["Friends"])
    a.send_presence_subscription(pto=bob, ptype="subscribe")
    # Bob's client approves and subscribes back: each sees the other available.
    await common.wait_for(a.available, lambda p: p["from"].bare == bob, "Bob's presence at Alice")
    await common.wait_for(b.available, lambda p: p["from"].bare == alice, "Alice's presence at Bob")

    # A fresh roster fetch shows the stored item.
    await a.get_roster()
    item = a.client_roster[bob]
    assert item["name"] == "Bob", item["name"]
    assert list(item["groups"]) == ["Friends"], item["groups"]
    for _ in range(50):
        if a.client_roster[bob]["subscription"] == "both":
            break
        await asyncio.sleep(0.1)
    assert a.client_roster[bob]["subscription"] == "both", a.client_roster[bob]["subscription"]

    # vCard round trip through the server.
    card = a.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Interop"
    card["NICKNAME"] = "ali"
    await a.plugin["xep_0054"].publish_vcard(card)
    got = await b.plugin["xep_0054"].get_vcard(alice)
    fields = {c.tag.split("}")[1]: c.text for c in got.xml.find("{vcard-temp}vCard")}
    assert fields.get("FN") == "Alice Interop", got
    assert fields.get("NICKNAME") == "ali", got

    # Offline message delivered at Bob's next login, with a delay stamp.
    b.disconnect()
    await common.wait_for(a.unavailable, lambda p: p["from"].bare == bob, "Bob going offline")
    a.send_message(mto=bob, mbody="while you were out", mtype="chat")
    await a.plugin["xep_0199"].ping(jid=a.boundjid.domain, timeout=10)
    (b2,) = await common.log_in(Client, host, port, cert, mech, (bob, pb))
    msg = await common.wait_for(b2.inbox, lambda m: m["body"] == "while you were out", "the offline message")
    stamp = msg["delay"]["stamp"]
    assert stamp is not None, msg

    await common.finish("roster, subscription handshake, presence, vCard, offline message with delay", a, b2)


if __name__ == "__main__":
    common.script(main)
