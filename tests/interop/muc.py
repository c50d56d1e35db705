"""Interop check of XEP-0045 multi-user chat with slixmpp's xep_0045 plugin (a client library
nobody here wrote: its join, its room configuration through XEP-0004 forms, its admin IQs,
and its parsing of the room's presence and messages into events).

Two clients log in over STARTTLS (with SCRAM-SHA-256, or the library's default choice; see
common.py) on different shards. Alice creates a room at conference.<domain> with the plugin's
join_muc_wait (self-presence with 110 and 201, owner and moderator, then the subject), fetches
the configuration form with get_room_config, fills in a room name and persistence and submits
the whole form back with set_room_config; the form read again, the room's disco#info and the
service's disco#items show the new configuration. Bob joins (participant, Alice is among the
occupants, the room shows his real JID to Alice the moderator only). Alice's groupchat
message reaches both from room/alice, Bob's reply reaches Alice from room/bob; Bob's private
message to room/alice reaches Alice from room/bob. Alice kicks Bob with set_role(room, 'bob',
'none'): her IQ gets its result, Bob gets his unavailable presence with 307 and 110, Alice
sees him leave with 307. Alice leaves with leave_muc and gets her own unavailable presence.
Exit status 0 means every step was seen to work.

The plugin's API used here is the same in 1.8 (Debian 12) and later: join_muc_wait (since
1.8.0), get_room_config, set_room_config, set_role and leave_muc, the `groupchat_message`
and `muc::ROOM::presence` events; commands are awaited through common.settle anyway.
"""

import asyncio

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

import common

NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
ROOMNAME = "muc#roomconfig_roomname"
PERSISTENT = "muc#roomconfig_persistentroom"
ROOM_NAME = "Interop room"


class Client(common.Client):
    def __init__(self, jid, password, host, port, cert, mech):
        plugins = ("xep_0030", "xep_0045", "xep_0199")
        super().__init__(jid, password, host, port, cert, mech, plugins)
        self.groupchat = asyncio.Queue()
        self.chats = asyncio.Queue()
        self.room_presence = asyncio.Queue()
        self.raw_presence = asyncio.Queue()
        self.add_event_handler("groupchat_message", lambda m: self.groupchat.put_nowait(m))
        self.add_event_handler(
            "message", lambda m: m["type"] in ("chat", "normal") and self.chats.put_nowait(m)
        )
        # Every presence as it arrives, for what the plugin no longer reports (after
        # leave_muc it forgets the room, so the room's answer raises no muc:: event).
        self.register_handler(
            Callback("interop raw presence", StanzaPath("presence"), self.raw_presence.put_nowait)
        )

    async def on_online(self):
        self.send_presence()

    def watch(self, room):
        """Queue the plugin's `muc::ROOM::presence` events."""
        self.add_event_handler(
            "muc::%s::presence" % room, lambda p: self.room_presence.put_nowait(p)
        )

    @property
    def muc(self):
        return self.plugin["xep_0045"]


def codes(pres):
    return set(pres["muc"]["status_codes"])


def describe(pres):
    return "%s %s: codes %s, %s/%s, jid %r" % (
        pres["type"],
        pres["from"],
        sorted(codes(pres)),
        pres["muc"]["affiliation"],
        pres["muc"]["role"],
        str(pres["muc"]["jid"]),
    )


async def join(client, room, nick):
    """The plugin's join: (self-presence, subject message, occupants' presences)."""
    try:
        pres, subject, occupants, _history = await client.muc.join_muc_wait(
            room, nick, maxstanzas=0, timeout=15
        )
    except asyncio.TimeoutError:
        raise AssertionError(
            f"{nick}: join_muc_wait saw no self-presence (110) and subject from {room}"
        ) from None
    print(f"{nick} joined: {describe(pres)}")
    assert pres["type"] != "error", pres
    assert pres["from"] == f"{room}/{nick}", pres["from"]
    assert 110 in codes(pres), f"no 110 in the self-presence: {pres}"
    assert subject["from"].bare == room, subject
    assert subject.xml.find("{jabber:client}subject") is not None, subject
    return pres, subject, occupants


def field_values(form):
    return {var: f["value"] for var, f in form.get_fields().items()}


async def get_config(client, room):
    form = await common.settle(client.muc.get_room_config(room, timeout=10))
    assert form["type"] == "form", form
    fields = form.get_fields()
    # A hidden field is multi-valued to slixmpp: a list of its values.
    assert fields["FORM_TYPE"]["value"] in (NS_ROOMCONFIG, [NS_ROOMCONFIG]), fields["FORM_TYPE"]
    for var in (ROOMNAME, PERSISTENT):
        assert var in fields, f"no {var} in the configuration form: {form}"
    return form


async def main(host, port, cert, alice, bob, pa, pb, mech):
    a, b = await common.log_in(Client, host, port, cert, mech, (alice, pa), (bob, pb))
    service = "conference." + a.boundjid.domain
    room = "interop@" + service
    for c in (a, b):
        c.watch(room)
        await c.plugin["xep_0199"].ping(jid=c.boundjid.domain, timeout=10)

    # 2. Alice creates the room: owner, moderator, 201 (locked until configured).
    pres, _, _ = await join(a, room, "alice")
    assert 201 in codes(pres), f"no 201 (room created) in {describe(pres)}"
    assert (pres["muc"]["affiliation"], pres["muc"]["role"]) == ("owner", "moderator"), describe(
        pres
    )

    # The configuration form, filled in and submitted whole with the plugin.
    form = await get_config(a, room)
    print("configuration form: %s" % sorted(form.get_fields()))
    form.get_fields()[ROOMNAME]["value"] = ROOM_NAME
    form.get_fields()[PERSISTENT]["value"] = True
    await common.settle(a.muc.set_room_config(room, form, timeout=10))
    # Read back: the form, the room's disco#info, the service's rooms.
    values = field_values(await get_config(a, room))
    assert values[ROOMNAME] == ROOM_NAME, values
    assert values[PERSISTENT] is True, values
    info = await common.settle(a.plugin["xep_0030"].get_info(jid=room, timeout=10))
    features = set(info["disco_info"]["features"])
    names = [i[3] for i in info["disco_info"]["identities"] if i[0] == "conference"]
    assert {"http://jabber.org/protocol/muc", "muc_persistent"} <= features, features
    assert names == [ROOM_NAME], info["disco_info"]["identities"]
    items = await common.settle(a.plugin["xep_0030"].get_items(jid=service, timeout=10))
    listed = {str(i[0]): i[2] for i in items["disco_items"]["items"]}
    assert listed.get(room) == ROOM_NAME, listed

    # Bob joins: a participant; Alice is there; she sees his real JID, he does not see hers
    # (semi-anonymous, the default).
    pres, _, occupants = await join(b, room, "bob")
    assert 201 not in codes(pres), describe(pres)
    assert (pres["muc"]["affiliation"], pres["muc"]["role"]) == ("none", "participant"), describe(
        pres
    )
    seen = {p["from"].resource: p for p in occupants}
    assert "alice" in seen, f"Alice not among the occupants Bob saw: {sorted(seen)}"
    assert seen["alice"]["muc"]["jid"].bare == "", describe(seen["alice"])
    assert sorted(b.muc.get_roster(room)) == ["alice", "bob"], b.muc.get_roster(room)
    arrived = await common.wait_for(
        a.room_presence,
        lambda p: p["from"] == f"{room}/bob" and p["type"] != "unavailable",
        "Bob's arrival at Alice",
    )
    assert arrived["muc"]["jid"].bare == bob, describe(arrived)
    assert sorted(a.muc.get_roster(room)) == ["alice", "bob"], a.muc.get_roster(room)

    # 3. Groupchat both ways.
    a.send_message(mto=room, mbody="hello room", mtype="groupchat")
    for c in (a, b):
        m = await common.wait_for(
            c.groupchat, lambda m: m["body"] == "hello room", f"Alice's groupchat at {c.boundjid}"
        )
        assert m["from"] == f"{room}/alice", m["from"]
        assert m["type"] == "groupchat", m
    b.send_message(mto=room, mbody="hello alice", mtype="groupchat")
    m = await common.wait_for(
        a.groupchat, lambda m: m["body"] == "hello alice", "Bob's groupchat at Alice"
    )
    assert m["from"] == f"{room}/bob", m["from"]

    # 4. A private message through the occupant JID.
    b.send_message(mto=f"{room}/alice", mbody="just for you", mtype="chat")
    m = await common.wait_for(
        a.chats, lambda m: m["body"] == "just for you", "Bob's private message at Alice"
    )
    assert m["from"] == f"{room}/bob", m["from"]
    assert m["type"] == "chat", m

    # 5. Alice kicks Bob: her IQ's result (an error raises IqError), his unavailable presence
    # with 307 (and 110: it is about him), and Alice sees him go with 307.
    await common.settle(a.muc.set_role(room, "bob", "none", reason="interop kick", timeout=10))
    gone = await common.wait_for(
        b.room_presence,
        lambda p: p["from"] == f"{room}/bob" and p["type"] == "unavailable",
        "Bob's own unavailable presence after the kick",
    )
    print(f"kicked: {describe(gone)}")
    assert {307, 110} <= codes(gone), describe(gone)
    assert gone["muc"]["role"] == "none", describe(gone)
    left = await common.wait_for(
        a.room_presence,
        lambda p: p["from"] == f"{room}/bob" and p["type"] == "unavailable",
        "Bob's unavailable presence at Alice after the kick",
    )
    assert 307 in codes(left) and 110 not in codes(left), describe(left)
    assert a.muc.get_roster(room) == ["alice"], a.muc.get_roster(room)

    # 6. Alice leaves: the room answers with her own unavailable presence.
    a.muc.leave_muc(room, "alice")
    bye = await common.wait_for(
        a.raw_presence,
        lambda p: p["from"] == f"{room}/alice" and p["type"] == "unavailable",
        "Alice's own unavailable presence after leaving",
    )
    assert 110 in codes(bye), describe(bye)

    await common.finish(
        "MUC room created, configured, joined, groupchat, private message, kick, leave", a, b
    )


if __name__ == "__main__":
    common.script(main)
