"""Interop check of PEP (XEP-0163) with XEP-0115 caps-filtered notifications, through slixmpp's
xep_0163, xep_0084 (user avatar) and xep_0107 (user mood) plugins (a client library nobody here
wrote: its entity capabilities, its `NODE+notify` interests, its publishing and its parsing of
pubsub events).

Three clients log in over STARTTLS (with SCRAM-SHA-256, or the library's default choice; see
common.py): the owner and the fan, on different shards, and the deaf one, on the fan's shard
(command line: the common one, then DEAF_JID DEAF_PASSWORD after MECH). Each loads xep_0030,
xep_0115, xep_0163, xep_0060, xep_0084 and xep_0107; the last two register their PEP nodes
with xep_0163, which advertises `urn:xmpp:avatar:metadata+notify` and
`http://jabber.org/protocol/mood+notify` in disco#info and so in the XEP-0115 caps hash. The
deaf client takes those two features away again before its first presence, so its caps say it
wants no notifications. Every client checks that the `ver` its presence carries is the hash of
what it advertises.

The owner subscribes to the fan and to the deaf one; their clients approve and subscribe back
(slixmpp's auto-authorize and auto-subscribe), so both relations are `both`. In this, the usual
order, each contact's presence (with its caps) reaches the owner when it approves, before the
owner has approved the contact's own request: the service must still end up knowing the
contacts' presence and caps once the relation is `both`. The owner's PEP service (its bare
JID) then asks for the disco#info at `node#ver` of each caps hash it has not seen, from the
owner's bare JID: every query any client gets from a bare JID is for the `ver`
that client sent, none is asked twice by the same service, and the owner's service asks about
the fan's and the deaf one's hash. A disco#info round trip from each client to the owner's
bare JID (which shows the PEP identity) is the barrier behind which the answers are processed.

The owner publishes a mood (publish_mood), the avatar data (publish_avatar) and its metadata
(publish_avatar_metadata). The fan gets the mood and the metadata as headline messages from
the owner's bare JID (the `user_mood_publish` and `avatar_metadata_publish` events), once each,
with the published payloads; it gets nothing about the data node (it has no interest in it),
and neither does the deaf client, within a quiet period. The owner's own client, interested
too, gets both as well. The fan then fetches the avatar data item with retrieve_avatar and
the deaf client the mood with get_items: the deaf one may read the node, it just asked for no
notifications. Exit status 0 means every step was seen to work.

The plugins' API used here is the same in 1.8 (Debian 12) and later; commands are awaited
through common.settle anyway. Both versions' xep_0163.remove_interest are broken (they format
the whole list of namespaces into one feature name, so they remove nothing), so the deaf
client removes the `+notify` features with xep_0030.del_feature itself.

XMPPD_INTEROP_DEBUG=1 in the environment logs slixmpp at debug level (the XML on the wire)
to standard error.
"""

import asyncio
import collections
import hashlib
import logging
import os
import sys

from slixmpp.stanza import Iq
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

import common

NS_MOOD = "http://jabber.org/protocol/mood"
NS_META = "urn:xmpp:avatar:metadata"
NS_DATA = "urn:xmpp:avatar:data"
NS_CAPS = "http://jabber.org/protocol/caps"
INTERESTS = (NS_MOOD, NS_META)
PLUGINS = ("xep_0030", "xep_0115", "xep_0163", "xep_0060", "xep_0084", "xep_0107")

MOOD = "happy"
MOOD_TEXT = "interop going well"
# A 1x1 transparent PNG.
AVATAR = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8ffff3f0005fe02fea7d605dc0000000049454e44ae426082"
)
AVATAR_ID = hashlib.sha1(AVATAR).hexdigest()
QUIET = 3  # seconds without an unwanted notification


class Client(common.Client):
    deaf = False

    def __init__(self, jid, password, host, port, cert, mech):
        super().__init__(jid, password, host, port, cert, mech, PLUGINS)
        # Every pubsub event message, as it arrived.
        self.events = []
        self.mood = asyncio.Queue()
        self.metadata = asyncio.Queue()
        self.available = asyncio.Queue()
        # (from, node) of every disco#info query at a caps node (NODE#VER).
        self.caps_queries = []
        self.sent_ver = None
        self.register_handler(
            Callback(
                "interop pubsub events",
                StanzaPath("message/pubsub_event"),
                lambda m: self.events.append(m),
            )
        )
        self.register_handler(
            Callback(
                "interop caps queries",
                StanzaPath("iq@type=get/disco_info"),
                self._on_disco_info_query,
            )
        )
        self.add_event_handler("user_mood_publish", lambda m: self.mood.put_nowait(m))
        self.add_event_handler("avatar_metadata_publish", lambda m: self.metadata.put_nowait(m))
        self.add_event_handler("presence_available", lambda p: self.available.put_nowait(p))
        # After xep_0115's own filter (added when the plugin was loaded) has put the caps in.
        self.add_filter("out", self._note_caps)

    def _on_disco_info_query(self, iq):
        node = iq["disco_info"]["node"]
        if "#" in (node or ""):
            self.caps_queries.append((iq["from"], node))

    def _note_caps(self, stanza):
        if stanza.name == "presence" and stanza["caps"]["ver"]:
            self.sent_ver = stanza["caps"]["ver"]
        return stanza

    @property
    def caps_node(self):
        return self.plugin["xep_0115"].caps_node

    async def own_info(self):
        info = await common.settle(
            self.plugin["xep_0030"].get_info(jid=self.boundjid, local=True)
        )
        return info["disco_info"] if isinstance(info, Iq) else info

    async def on_online(self):
        await self.get_roster()
        if self.deaf:
            # What xep_0163.remove_interest means to do (it is broken; see the docstring).
            for ns in INTERESTS:
                self.plugin["xep_0030"].del_feature(feature=ns + "+notify")
        # The caps of what is advertised now (xep_0163.add_interest only schedules this).
        await self.plugin["xep_0115"].update_caps(broadcast=False)
        info = await self.own_info()
        features = set(info["features"])
        wanted = {ns + "+notify" for ns in INTERESTS}
        if self.deaf:
            assert not wanted & features, f"{self.boundjid}: still advertises {wanted & features}"
        else:
            assert wanted <= features, f"{self.boundjid}: advertises {sorted(features)}"
        assert NS_CAPS in features, features
        ver = self.plugin["xep_0115"].generate_verstring(info, "sha-1")
        assigned = await self.plugin["xep_0115"].get_verstring()
        assert assigned == ver, f"{self.boundjid}: caps ver {assigned}, features hash to {ver}"
        self.send_presence()

    def notifications(self, node=None):
        """The (node, item ids) of the pubsub item events received (about `node`)."""
        out = []
        for m in self.events:
            items = m["pubsub_event"]["items"]
            if node is None or items["node"] == node:
                out.append((items["node"], [i["id"] for i in items]))
        return out


class Deaf(Client):
    deaf = True


def relation(a, b):
    return a.client_roster[b.boundjid.bare]["subscription"]


async def mutual(owner, contact):
    """The owner subscribes; the contact's client approves and subscribes back."""
    owner.send_presence_subscription(pto=contact.boundjid.bare, ptype="subscribe")
    for _ in range(150):
        if relation(owner, contact) == "both" and relation(contact, owner) == "both":
            break
        await asyncio.sleep(0.1)
    assert (relation(owner, contact), relation(contact, owner)) == ("both", "both"), (
        f"subscription between {owner.boundjid.bare} and {contact.boundjid.bare}: "
        f"{relation(owner, contact)} / {relation(contact, owner)}"
    )
    await common.wait_for(
        owner.available,
        lambda p: p["from"].bare == contact.boundjid.bare,
        f"{contact.boundjid.bare}'s presence at the owner",
    )
    await common.wait_for(
        contact.available,
        lambda p: p["from"].bare == owner.boundjid.bare,
        f"the owner's presence at {contact.boundjid.bare}",
    )


def server_queries(clients):
    """(client, from, node) of the caps queries from bare JIDs (services, not clients)."""
    return [
        (c, str(f), node)
        for c in clients
        for f, node in c.caps_queries
        if not f.resource
    ]


async def wait_caps_queries(owner, fan, deaf, timeout=15):
    """Until the owner's service has asked about the fan's and the deaf one's caps."""
    clients = (owner, fan, deaf)
    want = {fan.sent_ver, deaf.sent_ver}
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while True:
        asked = {
            node.rsplit("#", 1)[1]
            for _, f, node in server_queries(clients)
            if f == owner.boundjid.bare
        }
        if want <= asked:
            return
        if loop.time() > deadline:
            raise AssertionError(
                "the owner's PEP service did not query the caps of %s within %ss; "
                "caps queries seen: %s"
                % (
                    sorted(want - asked),
                    timeout,
                    [(str(c.boundjid), f, n) for c, f, n in server_queries(clients)],
                )
            )
        await asyncio.sleep(0.1)


def check_caps_queries(owner, fan, deaf):
    clients = (owner, fan, deaf)
    seen = server_queries(clients)
    for c, f, node in seen:
        print(f"caps query to {c.boundjid} from {f}: {node}")
        assert node == f"{c.caps_node}#{c.sent_ver}", (
            f"{c.boundjid} asked for {node}, its presence said {c.caps_node}#{c.sent_ver}"
        )
        assert f in {x.boundjid.bare for x in clients}, f"caps query from {f}"
    twice = [k for k, n in collections.Counter((f, node) for _, f, node in seen).items() if n > 1]
    assert not twice, f"caps asked more than once by the same service: {twice}"


def check_event(msg, owner, node, item_id):
    """A notification: a headline from the owner's bare JID with one item of `node`."""
    assert msg["from"].full == owner.boundjid.bare, f"notification from {msg['from']}: {msg}"
    assert msg["type"] == "headline", f"notification of type {msg['type']!r}: {msg}"
    items = msg["pubsub_event"]["items"]
    assert items["node"] == node, msg
    got = list(items)
    assert [i["id"] for i in got] == [item_id], msg
    return got[0]


async def main(host, port, cert, owner_jid, fan_jid, po, pf, mech):
    deaf_jid, pd = sys.argv[9:11]
    if os.environ.get("XMPPD_INTEROP_DEBUG"):
        logging.getLogger().setLevel(logging.DEBUG)
    owner, fan = await common.log_in(Client, host, port, cert, mech, (owner_jid, po), (fan_jid, pf))
    (deaf,) = await common.log_in(Deaf, host, port, cert, mech, (deaf_jid, pd))
    clients = (owner, fan, deaf)
    for c in clients:
        # The presence goes through the output filters asynchronously.
        for _ in range(50):
            if c.sent_ver:
                break
            await asyncio.sleep(0.1)
        assert c.sent_ver, f"{c.boundjid}: no caps in its presence"
        print(f"{c.boundjid.bare} ({'deaf' if c.deaf else 'interested'}): caps ver {c.sent_ver}")
    assert fan.sent_ver != deaf.sent_ver, "the deaf client's caps are the fan's"

    # Mutual subscriptions: owner <-> fan, owner <-> deaf.
    await mutual(owner, fan)
    await mutual(owner, deaf)

    # The server learns the caps it has not seen, from the owner's bare JID.
    await wait_caps_queries(owner, fan, deaf)
    check_caps_queries(owner, fan, deaf)
    # Barrier: an IQ to the owner's bare JID from each client is answered behind its caps
    # answer. It is also the owner's disco#info: a PEP service.
    for c in clients:
        info = await common.settle(
            c.plugin["xep_0030"].get_info(jid=owner.boundjid.bare, timeout=10)
        )
        ids = info["disco_info"]["identities"]
        assert any(i[0] == "pubsub" and i[1] == "pep" for i in ids), ids

    # The owner publishes.
    await common.settle(owner.plugin["xep_0107"].publish_mood(MOOD, MOOD_TEXT, timeout=10))
    await common.settle(owner.plugin["xep_0084"].publish_avatar(AVATAR, timeout=10))
    # Width and height as text: slixmpp writes them into the XML as they are given.
    info = {"id": AVATAR_ID, "type": "image/png", "bytes": len(AVATAR), "width": "1", "height": "1"}
    await common.settle(owner.plugin["xep_0084"].publish_avatar_metadata(info, timeout=10))
    print("published mood, avatar data and metadata")

    # The fan (and the owner's own client) get the mood and the metadata.
    for c in (fan, owner):
        msg = await common.wait_for(
            c.mood, lambda m: True, f"the mood notification at {c.boundjid}"
        )
        item = check_event(msg, owner, NS_MOOD, "current")
        assert item["mood"]["value"] == MOOD, msg
        assert item["mood"]["text"] == MOOD_TEXT, msg
        msg = await common.wait_for(
            c.metadata, lambda m: True, f"the avatar metadata notification at {c.boundjid}"
        )
        item = check_event(msg, owner, NS_META, AVATAR_ID)
        infos = list(item["avatar_metadata"]["items"])
        assert len(infos) == 1, msg
        assert (infos[0]["id"], infos[0]["type"], int(infos[0]["bytes"])) == (
            AVATAR_ID,
            "image/png",
            len(AVATAR),
        ), msg
        print(f"{c.boundjid.bare} notified: mood {MOOD}, avatar metadata {AVATAR_ID}")

    # Nothing more: no data-node notification, no duplicate, and nothing at all for the deaf.
    await asyncio.sleep(QUIET)
    want = [(NS_MOOD, ["current"]), (NS_META, [AVATAR_ID])]
    for c in (fan, owner):
        got = c.notifications()
        assert sorted(got) == sorted(want), f"{c.boundjid} got notifications {got}"
    assert deaf.notifications() == [], (
        f"the deaf client (no +notify in its caps) got notifications {deaf.notifications()}"
    )
    print(f"deaf client: no notification in {QUIET}s")

    # Retrieval: the fan fetches the avatar data, the deaf client the mood.
    iq = await common.settle(
        fan.plugin["xep_0084"].retrieve_avatar(owner.boundjid.bare, AVATAR_ID, timeout=10)
    )
    items = list(iq["pubsub"]["items"])
    assert iq["pubsub"]["items"]["node"] == NS_DATA, iq
    assert [i["id"] for i in items] == [AVATAR_ID], iq
    assert items[0]["avatar_data"]["value"] == AVATAR, iq
    iq = await common.settle(
        deaf.plugin["xep_0060"].get_items(owner.boundjid.bare, NS_MOOD, timeout=10)
    )
    items = list(iq["pubsub"]["items"])
    assert [i["id"] for i in items] == ["current"], iq
    mood = items[0].xml.find("{%s}mood" % NS_MOOD)
    assert mood is not None and mood.find("{%s}%s" % (NS_MOOD, MOOD)) is not None, iq
    print("retrieved: avatar data by the fan, mood by the deaf client")

    # XEP-0060 §6.1 explicit subscription, for a client without +notify: the deaf client
    # subscribes its bare JID to the mood node, gets the next mood once (PEP-06), then
    # unsubscribes and gets nothing more.
    iq = await common.settle(
        deaf.plugin["xep_0060"].subscribe(owner.boundjid.bare, NS_MOOD, timeout=10)
    )
    sub = iq["pubsub"]["subscription"]
    assert (sub["node"], sub["subscription"]) == (NS_MOOD, "subscribed"), iq
    assert sub["jid"].full == deaf.boundjid.bare, iq
    await asyncio.sleep(1)
    deaf.events.clear()
    await common.settle(owner.plugin["xep_0107"].publish_mood("sad", "subscribed", timeout=10))
    await asyncio.sleep(QUIET)
    assert deaf.notifications() == [(NS_MOOD, ["current"])], deaf.notifications()
    await common.settle(
        deaf.plugin["xep_0060"].unsubscribe(owner.boundjid.bare, NS_MOOD, timeout=10)
    )
    deaf.events.clear()
    await common.settle(owner.plugin["xep_0107"].publish_mood("happy", "again", timeout=10))
    await asyncio.sleep(QUIET)
    assert deaf.notifications() == [], deaf.notifications()
    print("explicit subscription: one notification while subscribed, none after")

    await common.finish(
        "PEP caps queried, mood and avatar metadata notified by +notify only, items retrieved, "
        "explicit subscription",
        *clients,
    )


if __name__ == "__main__":
    common.script(main)
