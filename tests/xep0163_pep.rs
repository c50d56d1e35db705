//! XEP-0163 PEP on the XEP-0060 pubsub core, and XEP-0115 caps as PEP uses them, on the
//! wire: PEP-*, CAPS-*, and XEP-0060 sections for the pubsub operations and their errors.
//!
//! The clients here answer the server's caps queries themselves (`answer_caps`); their `ver`
//! is computed with the server's own §5.1 function, which unit tests pin to the XEP's
//! examples (src/xmpp/caps.rs).

mod common;

use std::time::Duration;

use common::*;
use xmppd::xml::Element;
use xmppd::xmpp::caps::{ver_hash, CapsAlgo};

const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const TUNE: &str = "http://jabber.org/protocol/tune";
const MOOD: &str = "http://jabber.org/protocol/mood";
const CAPS_NODE: &str = "https://xmppd.test/client";

/// A client's disco#info and its caps `ver`.
struct ClientCaps {
    info: String,
    ver: String,
}

impl ClientCaps {
    /// A client with these features (`unique` keeps tests on a shared server from sharing a
    /// cached `ver`).
    fn new(unique: &str, features: &[&str]) -> ClientCaps {
        let mut info = format!(
            "<query xmlns='{DISCO_INFO}'><identity category='client' type='pc' name='test'/>\
             <feature var='{DISCO_INFO}'/><feature var='urn:test:{unique}'/>"
        );
        for f in features {
            info.push_str(&format!("<feature var='{f}'/>"));
        }
        info.push_str("</query>");
        let el = parse_client(&info);
        let ver = ver_hash(&el, CapsAlgo::Sha1).expect("valid disco#info");
        ClientCaps { info, ver }
    }

    fn presence(&self) -> String {
        format!(
            "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/></presence>",
            self.ver
        )
    }
}

fn is_caps_query(e: &Element) -> bool {
    e.name == "iq"
        && e.attr("type") == Some("get")
        && e.child("query", DISCO_INFO)
            .and_then(|q| q.attr("node"))
            .is_some_and(|n| n.starts_with(CAPS_NODE))
}

/// Wait for the server's caps query (CAPS-01: to this full JID, `node#ver`), answer it with
/// `info`; returns the query and what arrived before it.
fn answer_caps(c: &mut Client, caps: &ClientCaps, info: &str) -> (Element, Vec<Element>) {
    let (q, skipped) = c.recv_until("caps query", is_caps_query);
    let node = q.child("query", DISCO_INFO).unwrap().attr("node").unwrap();
    assert_eq!(
        node,
        format!("{CAPS_NODE}#{}", caps.ver),
        "CAPS-01 node#ver"
    );
    assert_eq!(q.attr("to"), Some(c.full().as_str()));
    c.answer_disco_info(&q, info, node);
    (q, skipped)
}

/// Answer every caps query that arrives within `d` (with several shards, each owner's shard
/// asks once, and so does the client's own account's); returns how many were answered.
fn answer_caps_for(c: &mut Client, caps: &ClientCaps, d: Duration) -> usize {
    let mut answered = 0;
    for e in c.collect_for(d) {
        if is_caps_query(&e) {
            let node = e.child("query", DISCO_INFO).unwrap().attr("node").unwrap();
            assert_eq!(
                node,
                format!("{CAPS_NODE}#{}", caps.ver),
                "CAPS-01 node#ver"
            );
            c.answer_disco_info(&e, &caps.info, node);
            answered += 1;
        }
    }
    answered
}

fn publish(c: &mut Client, id: &str, node: &str, item_id: Option<&str>, payload: &str) -> Element {
    let item = match item_id {
        Some(i) => format!("<item id='{i}'>{payload}</item>"),
        None => format!("<item>{payload}</item>"),
    };
    c.send(&format!(
        "<iq type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>{item}</publish></pubsub></iq>"
    ));
    c.recv_until("publish answer", |e| e.attr("id") == Some(id))
        .0
}

fn tune(title: &str) -> String {
    format!("<tune xmlns='{TUNE}'><title>{title}</title></tune>")
}

/// The pubsub event of a notification message, if `e` is one.
fn event(e: &Element) -> Option<&Element> {
    (e.name == "message").then_some(())?;
    e.child("event", EVENT)
}

fn notified_title(e: &Element) -> Option<String> {
    let items = event(e)?.child("items", EVENT)?;
    let item = items.child("item", EVENT)?;
    Some(item.child("tune", TUNE)?.child("title", TUNE)?.text())
}

fn app_error(e: &Element) -> Option<String> {
    e.child("error", "jabber:client")?
        .elements()
        .find(|c| c.ns == ERRORS)
        .map(|c| c.name.clone())
}

fn fresh_pair(s: &Server, prefix: &str) -> (Client, Client) {
    let (u, p) = s.new_user(&format!("{prefix}o"));
    let (v, vp) = s.new_user(&format!("{prefix}c"));
    let mut owner = Client::online(s, &u, &p, None);
    let mut contact = Client::online(s, &v, &vp, None);
    befriend(&mut owner, &mut contact);
    (owner, contact)
}

#[test]
fn pep_01_the_account_is_a_pep_service() {
    let s = Server::shared();
    let (u, p) = s.new_user("pep01");
    let mut c = Client::login(s, &u, &p, None);
    c.send("<iq type='get' id='i'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let r = c.recv_el();
    let q = r.child("query", DISCO_INFO).expect("disco#info");
    assert!(
        q.elements().any(|i| i.name == "identity"
            && i.attr("category") == Some("pubsub")
            && i.attr("type") == Some("pep")),
        "{r:?}"
    );
    let features: Vec<&str> = q.elements().filter_map(|f| f.attr("var")).collect();
    for f in [
        "auto-create",
        "auto-subscribe",
        "filtered-notifications",
        "publish",
        "retrieve-items",
        "publish-options",
        "config-node-max",
    ] {
        let var = format!("{PUBSUB}#{f}");
        assert!(features.contains(&var.as_str()), "{var} in {features:?}");
    }
}

#[test]
fn pep_02_publish_auto_creates_and_generates_an_id() {
    let s = Server::shared();
    let (u, p) = s.new_user("pep02");
    let mut c = Client::login(s, &u, &p, None);
    let r = publish(&mut c, "p1", TUNE, None, &tune("One"));
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let item = r
        .child("pubsub", PUBSUB)
        .and_then(|ps| ps.child("publish", PUBSUB))
        .filter(|p| p.attr("node") == Some(TUNE))
        .and_then(|p| p.child("item", PUBSUB))
        .expect("publish/item in the result");
    let generated = item.attr("id").expect("a generated id").to_string();
    assert!(!generated.is_empty());
    // With an id: that id.
    let r = publish(&mut c, "p2", TUNE, Some("mine"), &tune("Two"));
    let id = r
        .child("pubsub", PUBSUB)
        .unwrap()
        .child("publish", PUBSUB)
        .unwrap()
        .child("item", PUBSUB)
        .unwrap()
        .attr("id");
    assert_eq!(id, Some("mine"));
    // XEP-0060 §6.5: the owner retrieves it; max_items 1 by default for PEP: the latest only.
    c.send(&format!(
        "<iq type='get' id='g'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub></iq>"
    ));
    let r = c.recv_el();
    let items: Vec<&Element> = r
        .child("pubsub", PUBSUB)
        .unwrap()
        .child("items", PUBSUB)
        .unwrap()
        .elements()
        .collect();
    assert_eq!(items.len(), 1, "{r:?}");
    assert_eq!(items[0].attr("id"), Some("mine"));
    assert_eq!(
        items[0]
            .child("tune", TUNE)
            .unwrap()
            .child("title", TUNE)
            .unwrap()
            .text(),
        "Two"
    );
}

/// PEP-03/04/05: the owner's resources and a contact with `+notify` get the notification from
/// the owner's bare JID; a contact without `+notify` gets none. CAPS-01 on the way.
#[test]
fn pep_03_04_05_notifications_follow_caps_filters() {
    let s = Server::start(&["--shards", "2"]);
    s.adduser("juliet", "jpw");
    s.adduser("romeo", "rpw");
    s.adduser("nurse", "npw");
    let mut j = Client::online(&s, "juliet", "jpw", None);
    let mut r = Client::online(&s, "romeo", "rpw", None);
    let mut n = Client::online(&s, "nurse", "npw", None);
    befriend(&mut j, &mut r);
    befriend(&mut j, &mut n);
    let tune_notify = format!("{TUNE}+notify");
    let wants = ClientCaps::new("pep05-wants", &[&tune_notify]);
    let deaf = ClientCaps::new("pep05-deaf", &[TUNE]);
    // Romeo's and the nurse's clients advertise caps; juliet's service asks each once.
    r.send(&wants.presence());
    assert!(answer_caps_for(&mut r, &wants, Duration::from_millis(600)) >= 1);
    n.send(&deaf.presence());
    assert!(answer_caps_for(&mut n, &deaf, Duration::from_millis(600)) >= 1);
    // Juliet's own client wants tunes too.
    j.send(&wants.presence());
    // The cache is per shard: juliet's shard may know the ver already (romeo's answer) or ask.
    answer_caps_for(&mut j, &wants, Duration::from_millis(600));
    std::thread::sleep(Duration::from_millis(200));
    let _ = r.collect_for(Duration::from_millis(100));
    let _ = n.collect_for(Duration::from_millis(100));
    // The result and the owner's own notification come in either order.
    j.send(&format!(
        "<iq type='set' id='pub'><pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item id='t1'>{}</item></publish></pubsub></iq>",
        tune("Wherefore")
    ));
    let (got, _) = j.recv_all(&[
        ("publish result", &|e: &Element| e.attr("id") == Some("pub")),
        ("own notification", &|e: &Element| {
            notified_title(e).is_some()
        }),
    ]);
    assert_eq!(got[0].attr("type"), Some("result"), "{:?}", got[0]);
    // PEP-04: juliet's own resource got it too, from her bare JID.
    assert_eq!(got[1].attr("from"), Some("juliet@localhost"));
    // PEP-03/05: romeo gets it, from juliet's bare JID.
    let (m, _) = r.recv_until("tune notification", |e| notified_title(e).is_some());
    assert_eq!(
        m.attr("from"),
        Some("juliet@localhost"),
        "PEP-03: from the bare JID"
    );
    assert_eq!(notified_title(&m).as_deref(), Some("Wherefore"));
    let items = event(&m).unwrap().child("items", EVENT).unwrap();
    assert_eq!(items.attr("node"), Some(TUNE));
    assert_eq!(items.child("item", EVENT).unwrap().attr("id"), Some("t1"));
    // PEP-05: the nurse's client did not ask for tunes.
    let got = n.collect_for(Duration::from_millis(400));
    assert!(
        got.iter().all(|e| event(e).is_none()),
        "no +notify, no notification: {got:?}"
    );
    // PEP-07: a presence update (no unavailable between) replays nothing.
    r.send(
        &wants
            .presence()
            .replace("<presence>", "<presence><show>away</show>"),
    );
    let got = r.collect_for(Duration::from_millis(400));
    assert!(got.iter().all(|e| event(e).is_none()), "PEP-07: {got:?}");
}

/// PEP-07/16: a contact coming online (after the owner published and went offline) gets the
/// last item; PEP-08: so does a new resource of the owner.
#[test]
fn pep_07_08_16_last_item_on_first_presence() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("ophelia", "opw");
    s.adduser("hamlet", "hpw");
    let tune_notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("pep07", &[&tune_notify]);
    {
        let mut o = Client::online(&s, "ophelia", "opw", None);
        let mut h = Client::online(&s, "hamlet", "hpw", None);
        befriend(&mut o, &mut h);
        let r = publish(&mut o, "p", TUNE, Some("last"), &tune("Rosemary"));
        assert_eq!(r.attr("type"), Some("result"));
        publish(
            &mut o,
            "p2",
            MOOD,
            Some("m"),
            &format!("<mood xmlns='{MOOD}'><sad/></mood>"),
        );
        h.close();
        o.close();
    }
    // Hamlet comes back with caps wanting tunes: the server asks, then sends the last item
    // (the owner is offline: PEP-16).
    let mut h = Client::login(&s, "hamlet", "hpw", None);
    h.send(&caps.presence());
    let (_, _) = answer_caps(&mut h, &caps, &caps.info);
    let (m, _) = h.recv_until("last item", |e| notified_title(e).is_some());
    assert_eq!(m.attr("from"), Some("ophelia@localhost"));
    assert_eq!(notified_title(&m).as_deref(), Some("Rosemary"));
    assert!(
        m.child("delay", "urn:xmpp:delay").is_some(),
        "a replay carries its time"
    );
    // Only the tune: the mood was not asked for.
    let got = h.collect_for(Duration::from_millis(300));
    assert!(got.iter().all(|e| event(e).is_none()), "{got:?}");
    // PEP-08: a new resource of the owner with the (now cached) caps gets it at once.
    let mut o2 = Client::login(&s, "ophelia", "opw", Some("second"));
    o2.send(&caps.presence());
    let (m, skipped) = o2.recv_until("own last item", |e| notified_title(e).is_some());
    assert!(
        skipped.iter().all(|e| !is_caps_query(e)),
        "CAPS-01: cached, not asked again"
    );
    assert_eq!(notified_title(&m).as_deref(), Some("Rosemary"));
}

/// CAPS-02: an answer whose hash does not match is not cached: the next client with the same
/// `ver` is asked again. The JID that answered still gets what its own features ask for.
#[test]
fn caps_02_a_wrong_hash_is_not_cached() {
    let s = Server::start(&["--shards", "1"]);
    for u in ["liar1", "liar2", "target"] {
        s.adduser(u, "pw");
    }
    let mut t = Client::online(&s, "target", "pw", None);
    let mut l1 = Client::online(&s, "liar1", "pw", None);
    let mut l2 = Client::online(&s, "liar2", "pw", None);
    befriend(&mut t, &mut l1);
    befriend(&mut t, &mut l2);
    let tune_notify = format!("{TUNE}+notify");
    let real = ClientCaps::new("caps02", &[&tune_notify]);
    // Claim the ver of one feature set, answer with another (adds a feature).
    let lie = real
        .info
        .replace("</query>", "<feature var='urn:test:extra'/></query>");
    l1.send(&real.presence());
    answer_caps(&mut l1, &real, &lie);
    std::thread::sleep(Duration::from_millis(200));
    l2.send(&real.presence());
    // Asked again: the first answer was not cached.
    answer_caps(&mut l2, &real, &real.info);
    std::thread::sleep(Duration::from_millis(200));
    publish(&mut t, "p", TUNE, Some("x"), &tune("Verified"));
    // liar2's verified answer and liar1's own (unverified, but its own) both ask for tunes.
    l2.recv_until("notification", |e| notified_title(e).is_some());
    l1.recv_until("notification", |e| notified_title(e).is_some());
}

/// PEP-11: the access models, as a stranger and as a contact sees them.
#[test]
fn pep_11_access_models() {
    let s = Server::shared();
    let (owner, contact) = fresh_pair(s, "pep11");
    let mut owner = owner;
    let mut contact = contact;
    let (x, xp) = s.new_user("pep11x");
    let mut stranger = Client::login(s, &x, &xp, None);
    let ob = owner.bare();
    publish(&mut owner, "p", TUNE, Some("a"), &tune("Presence"));
    let get = |c: &mut Client, node: &str| {
        c.send(&format!(
            "<iq type='get' id='g' to='{ob}'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"
        ));
        c.recv_until("items answer", |e| e.attr("id") == Some("g"))
            .0
    };
    // presence (default): the contact reads, the stranger is told it needs a subscription.
    assert_eq!(get(&mut contact, TUNE).attr("type"), Some("result"));
    let r = get(&mut stranger, TUNE);
    assert_eq!(stanza_error(&r).unwrap().0, "not-authorized");
    assert_eq!(
        app_error(&r).as_deref(),
        Some("presence-subscription-required")
    );
    // open: anyone.
    let set_access = |c: &mut Client, node: &str, model: &str, id: &str| {
        c.send(&format!(
            "<iq type='set' id='{id}'><pubsub xmlns='{OWNER}'><configure node='{node}'>\
             <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{}</value></field>\
             <field var='pubsub#access_model'><value>{model}</value></field></x></configure></pubsub></iq>",
            "http://jabber.org/protocol/pubsub#node_config"
        ));
        let r = c
            .recv_until("configure answer", |e| e.attr("id") == Some(id))
            .0;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    };
    set_access(&mut owner, TUNE, "open", "c1");
    assert_eq!(get(&mut stranger, TUNE).attr("type"), Some("result"));
    // whitelist: only the owner.
    set_access(&mut owner, TUNE, "whitelist", "c2");
    let r = get(&mut contact, TUNE);
    assert_eq!(stanza_error(&r).unwrap().0, "not-allowed");
    assert_eq!(app_error(&r).as_deref(), Some("closed-node"));
    assert_eq!(get(&mut owner, TUNE).attr("type"), Some("result"));
    // roster: the contact is in no allowed group.
    set_access(&mut owner, TUNE, "roster", "c3");
    let r = get(&mut contact, TUNE);
    assert_eq!(stanza_error(&r).unwrap().0, "not-authorized");
    assert_eq!(app_error(&r).as_deref(), Some("not-in-roster-group"));
    // PEP-14: disco#items shows the stranger no node it may not read.
    stranger.send(&format!(
        "<iq type='get' id='d' to='{ob}'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let r = stranger
        .recv_until("disco items", |e| e.attr("id") == Some("d"))
        .0;
    assert_eq!(
        r.child("query", DISCO_ITEMS).unwrap().elements().count(),
        0,
        "{r:?}"
    );
    owner.send(&format!(
        "<iq type='get' id='d'><query xmlns='{DISCO_ITEMS}'/></iq>"
    ));
    let r = owner
        .recv_until("own disco items", |e| e.attr("id") == Some("d"))
        .0;
    let nodes: Vec<&str> = r
        .child("query", DISCO_ITEMS)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("node"))
        .collect();
    assert_eq!(nodes, [TUNE]);
}

/// PEP-12: only the owner publishes; retract with notify, delete and purge notify; missing
/// nodes and items are item-not-found; a second create is a conflict.
#[test]
fn pep_12_owner_operations_and_their_notifications() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("owner", "pw");
    s.adduser("fan", "pw");
    let mut o = Client::online(&s, "owner", "pw", None);
    let mut f = Client::online(&s, "fan", "pw", None);
    befriend(&mut o, &mut f);
    let notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("pep12", &[&notify]);
    f.send(&caps.presence());
    answer_caps(&mut f, &caps, &caps.info);
    std::thread::sleep(Duration::from_millis(200));
    // Someone else publishing to the owner's service: forbidden.
    f.send(&format!(
        "<iq type='set' id='x' to='owner@localhost'><pubsub xmlns='{PUBSUB}'><publish node='{TUNE}'><item>{}</item></publish></pubsub></iq>",
        tune("intruder")
    ));
    let r = f.recv_until("forbidden", |e| e.attr("id") == Some("x")).0;
    assert_eq!(stanza_error(&r).unwrap().0, "forbidden");
    publish(&mut o, "p", TUNE, Some("i1"), &tune("Kept"));
    f.recv_until("notification", |e| notified_title(e).is_some());
    // Retract with notify: <retract id/>.
    o.send(&format!(
        "<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='{TUNE}' notify='true'><item id='i1'/></retract></pubsub></iq>"
    ));
    assert_eq!(
        o.recv_until("retract", |e| e.attr("id") == Some("r"))
            .0
            .attr("type"),
        Some("result")
    );
    let (m, _) = f.recv_until("retract event", |e| {
        event(e)
            .and_then(|ev| ev.child("items", EVENT))
            .and_then(|i| i.child("retract", EVENT))
            .is_some()
    });
    let retract = event(&m)
        .unwrap()
        .child("items", EVENT)
        .unwrap()
        .child("retract", EVENT)
        .unwrap();
    assert_eq!(retract.attr("id"), Some("i1"));
    // Retracting it again: item-not-found.
    o.send(&format!(
        "<iq type='set' id='r2'><pubsub xmlns='{PUBSUB}'><retract node='{TUNE}'><item id='i1'/></retract></pubsub></iq>"
    ));
    let r = o
        .recv_until("retract again", |e| e.attr("id") == Some("r2"))
        .0;
    assert_eq!(stanza_error(&r).unwrap().0, "item-not-found");
    // Create: conflict for an existing node.
    o.send(&format!(
        "<iq type='set' id='c'><pubsub xmlns='{PUBSUB}'><create node='{TUNE}'/></pubsub></iq>"
    ));
    let r = o.recv_until("create", |e| e.attr("id") == Some("c")).0;
    assert_eq!(stanza_error(&r).unwrap().0, "conflict");
    // Purge notifies <purge/>.
    publish(&mut o, "p2", TUNE, Some("i2"), &tune("Soon purged"));
    f.recv_until("notification", |e| notified_title(e).is_some());
    o.send(&format!(
        "<iq type='set' id='pg'><pubsub xmlns='{OWNER}'><purge node='{TUNE}'/></pubsub></iq>"
    ));
    assert_eq!(
        o.recv_until("purge", |e| e.attr("id") == Some("pg"))
            .0
            .attr("type"),
        Some("result")
    );
    f.recv_until("purge event", |e| {
        event(e).and_then(|ev| ev.child("purge", EVENT)).is_some()
    });
    // Delete notifies <delete/>; afterwards the node is gone.
    o.send(&format!(
        "<iq type='set' id='d'><pubsub xmlns='{OWNER}'><delete node='{TUNE}'/></pubsub></iq>"
    ));
    assert_eq!(
        o.recv_until("delete", |e| e.attr("id") == Some("d"))
            .0
            .attr("type"),
        Some("result")
    );
    let (m, _) = f.recv_until("delete event", |e| {
        event(e).and_then(|ev| ev.child("delete", EVENT)).is_some()
    });
    assert_eq!(
        event(&m)
            .unwrap()
            .child("delete", EVENT)
            .unwrap()
            .attr("node"),
        Some(TUNE)
    );
    o.send(&format!(
        "<iq type='get' id='g'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub></iq>"
    ));
    let r = o
        .recv_until("items of a deleted node", |e| e.attr("id") == Some("g"))
        .0;
    assert_eq!(stanza_error(&r).unwrap().0, "item-not-found");
    // Configuration of a missing node: item-not-found; of someone else's: forbidden.
    o.send(&format!(
        "<iq type='get' id='cf'><pubsub xmlns='{OWNER}'><configure node='nope'/></pubsub></iq>"
    ));
    let r = o.recv_until("configure", |e| e.attr("id") == Some("cf")).0;
    assert_eq!(stanza_error(&r).unwrap().0, "item-not-found");
    f.send(&format!("<iq type='get' id='cf2' to='owner@localhost'><pubsub xmlns='{OWNER}'><configure node='{MOOD}'/></pubsub></iq>"));
    let r = f.recv_until("configure", |e| e.attr("id") == Some("cf2")).0;
    assert_eq!(stanza_error(&r).unwrap().0, "forbidden");
}

/// PEP-13: publish-options are preconditions on an existing node, and the configuration of
/// a new one.
#[test]
fn pep_13_publish_options() {
    let s = Server::shared();
    let (u, p) = s.new_user("pep13");
    let mut c = Client::login(s, &u, &p, None);
    let with_options = |c: &mut Client, id: &str, model: &str| {
        c.send(&format!(
            "<iq type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='urn:xmpp:test:13'><item id='a'><x xmlns='urn:test'/></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>{model}</value></field></x></publish-options></pubsub></iq>"
        ));
        c.recv_until("publish", |e| e.attr("id") == Some(id)).0
    };
    // A new node gets the options.
    assert_eq!(
        with_options(&mut c, "a", "whitelist").attr("type"),
        Some("result")
    );
    c.send("<iq type='get' id='cfg'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:test:13'/></pubsub></iq>");
    let r = c.recv_until("config", |e| e.attr("id") == Some("cfg")).0;
    let text = format!("{r:?}");
    assert!(text.contains("whitelist"), "{text}");
    // The same options again: fine. Different ones: conflict + precondition-not-met.
    assert_eq!(
        with_options(&mut c, "b", "whitelist").attr("type"),
        Some("result")
    );
    let r = with_options(&mut c, "c", "open");
    assert_eq!(stanza_error(&r).unwrap().0, "conflict");
    assert_eq!(app_error(&r).as_deref(), Some("precondition-not-met"));
}

/// XEP-0060 §7.1.3 error paths of a publish, and the bounds (payload size, node count).
#[test]
fn xep0060_7_1_3_publish_errors_and_bounds() {
    let s = Server::start(&[
        "--shards",
        "1",
        "--pep-max-nodes",
        "2",
        "--pep-max-item-bytes",
        "300",
    ]);
    s.adduser("bounded", "pw");
    let mut c = Client::login(&s, "bounded", "pw", None);
    // No payload.
    c.send(&format!("<iq type='set' id='np'><pubsub xmlns='{PUBSUB}'><publish node='n1'><item id='x'/></publish></pubsub></iq>"));
    let r = c.recv_el();
    assert_eq!(stanza_error(&r).unwrap().0, "bad-request");
    assert_eq!(app_error(&r).as_deref(), Some("payload-required"));
    // No node.
    c.send(&format!("<iq type='set' id='nn'><pubsub xmlns='{PUBSUB}'><publish><item><x xmlns='urn:x'/></item></publish></pubsub></iq>"));
    let r = c.recv_el();
    assert_eq!(stanza_error(&r).unwrap().0, "bad-request");
    assert_eq!(app_error(&r).as_deref(), Some("nodeid-required"));
    // Too big.
    let big = "z".repeat(400);
    let r = publish(
        &mut c,
        "big",
        "n1",
        None,
        &format!("<x xmlns='urn:x'>{big}</x>"),
    );
    assert_eq!(stanza_error(&r).unwrap().0, "not-acceptable");
    assert_eq!(app_error(&r).as_deref(), Some("payload-too-big"));
    // Two nodes fit, a third does not.
    assert_eq!(
        publish(&mut c, "1", "n1", None, "<x xmlns='urn:x'/>").attr("type"),
        Some("result")
    );
    assert_eq!(
        publish(&mut c, "2", "n2", None, "<x xmlns='urn:x'/>").attr("type"),
        Some("result")
    );
    let r = publish(&mut c, "3", "n3", None, "<x xmlns='urn:x'/>");
    assert_eq!(stanza_error(&r).unwrap().0, "not-allowed");
    assert_eq!(app_error(&r).as_deref(), Some("max-nodes-exceeded"));
    // Nothing of the refused ones was stored.
    c.send(&format!(
        "<iq type='get' id='g'><pubsub xmlns='{PUBSUB}'><items node='n3'/></pubsub></iq>"
    ));
    assert_eq!(stanza_error(&c.recv_el()).unwrap().0, "item-not-found");
}

/// Nothing acknowledged is lost: a published item survives `kill -9`.
#[test]
fn pep_acknowledged_items_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Server::start_on(dir.path(), &["--shards", "1"]);
        s.adduser("durable", "pw");
        let mut c = Client::login(&s, "durable", "pw", None);
        let r = publish(&mut c, "p", TUNE, Some("kept"), &tune("Still here"));
        assert_eq!(r.attr("type"), Some("result"));
        let status = s.signal_and_wait(libc::SIGKILL).expect("killed");
        assert!(!status.success());
    }
    let s = Server::start_on(dir.path(), &["--shards", "1"]);
    let mut c = Client::login(&s, "durable", "pw", None);
    c.send(&format!(
        "<iq type='get' id='g'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub></iq>"
    ));
    let r = c.recv_el();
    let item = r
        .child("pubsub", PUBSUB)
        .unwrap()
        .child("items", PUBSUB)
        .unwrap()
        .child("item", PUBSUB)
        .expect("the item");
    assert_eq!(item.attr("id"), Some("kept"));
}

/// PEP-15: a contact whose subscription to the owner is cancelled gets no further
/// notifications (its presence still reaches the owner: the owner stays subscribed to it).
#[test]
fn pep_15_losing_the_subscription_stops_notifications() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("star", "pw");
    s.adduser("exfan", "pw");
    let mut o = Client::online(&s, "star", "pw", None);
    let mut f = Client::online(&s, "exfan", "pw", None);
    befriend(&mut o, &mut f);
    let notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("pep15", &[&notify]);
    f.send(&caps.presence());
    answer_caps(&mut f, &caps, &caps.info);
    std::thread::sleep(Duration::from_millis(200));
    publish(&mut o, "p1", TUNE, Some("a"), &tune("Before"));
    f.recv_until("notification", |e| notified_title(e).is_some());
    // The owner cancels the fan's subscription (RFC 6121 §3.2): `both` becomes `to`.
    o.send("<presence to='exfan@localhost' type='unsubscribed'/>");
    f.recv_until("unsubscribed", |e| {
        is_presence(e, Some("unsubscribed"), Some("star@localhost"))
    });
    std::thread::sleep(Duration::from_millis(200));
    publish(&mut o, "p2", TUNE, Some("b"), &tune("After"));
    let got = f.collect_for(Duration::from_millis(500));
    assert!(got.iter().all(|e| event(e).is_none()), "PEP-15: {got:?}");
    // And it may no longer read the node (presence access model).
    f.send(&format!(
        "<iq type='get' id='g' to='star@localhost'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub></iq>"
    ));
    let r = f
        .recv_until("items answer", |e| e.attr("id") == Some("g"))
        .0;
    assert_eq!(stanza_error(&r).unwrap().0, "not-authorized");
}

fn publish_with_options(
    c: &mut Client,
    id: &str,
    node: &str,
    item: &str,
    fields: &[(&str, &str)],
) -> Element {
    let mut form = String::from(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>",
    );
    for (var, value) in fields {
        form.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    form.push_str("</x>");
    c.send(&format!(
        "<iq type='set' id='{id}'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>{item}</publish>\
         <publish-options>{form}</publish-options></pubsub></iq>"
    ));
    c.recv_until("publish answer", |e| e.attr("id") == Some(id))
        .0
}

/// XEP-0223: private data in a whitelist node with persist_items, kept across publishes and
/// readable by the owner only.
#[test]
fn xep0223_persistent_private_storage() {
    let s = Server::shared();
    let (owner, contact) = fresh_pair(s, "x223");
    let (mut owner, mut contact) = (owner, contact);
    let node = "storage:bookmarks";
    let opts = [
        ("pubsub#persist_items", "true"),
        ("pubsub#access_model", "whitelist"),
    ];
    let item = "<item id='current'><storage xmlns='storage:bookmarks'><conference jid='x@conference.localhost' autojoin='true'/></storage></item>";
    let r = publish_with_options(&mut owner, "p1", node, item, &opts);
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Again with the same options: the preconditions hold.
    let r = publish_with_options(&mut owner, "p2", node, item, &opts);
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    owner.send(&format!(
        "<iq type='get' id='g'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"
    ));
    let r = owner.recv_until("items", |e| e.attr("id") == Some("g")).0;
    let items = r
        .child("pubsub", PUBSUB)
        .unwrap()
        .child("items", PUBSUB)
        .unwrap();
    assert!(items
        .child("item", PUBSUB)
        .unwrap()
        .child("storage", "storage:bookmarks")
        .is_some());
    // A contact (with a presence subscription) may not read it.
    let ob = owner.bare();
    contact.send(&format!("<iq type='get' id='g' to='{ob}'><pubsub xmlns='{PUBSUB}'><items node='{node}'/></pubsub></iq>"));
    let r = contact.recv_until("items", |e| e.attr("id") == Some("g")).0;
    assert_eq!(stanza_error(&r).unwrap().0, "not-allowed");
    assert_eq!(app_error(&r).as_deref(), Some("closed-node"));
}

/// XEP-0084 avatars and an OMEMO (XEP-0384) device list work with no special code: data and
/// metadata nodes, an open device list readable by a stranger, notifications to a contact
/// that wants the metadata.
#[test]
fn xep0084_avatars_and_omemo_device_lists() {
    let s = Server::start(&["--shards", "2"]);
    s.adduser("painter", "pw");
    s.adduser("viewer", "pw");
    s.adduser("stranger", "pw");
    let mut p = Client::online(&s, "painter", "pw", None);
    let mut v = Client::online(&s, "viewer", "pw", None);
    befriend(&mut p, &mut v);
    let meta = "urn:xmpp:avatar:metadata";
    let data = "urn:xmpp:avatar:data";
    let notify = format!("{meta}+notify");
    let caps = ClientCaps::new(
        "x084",
        &[&notify, "eu.siacs.conversations.axolotl.devicelist+notify"],
    );
    v.send(&caps.presence());
    assert!(answer_caps_for(&mut v, &caps, Duration::from_millis(600)) >= 1);
    let hash = "111f4b3c50d7b0df729d299bc6f8e9ef9066971f";
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let r = publish(
        &mut p,
        "d",
        data,
        Some(hash),
        &format!("<data xmlns='{data}'>{png}</data>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let r = publish(
        &mut p,
        "m",
        meta,
        Some(hash),
        &format!("<metadata xmlns='{meta}'><info bytes='70' id='{hash}' height='1' width='1' type='image/png'/></metadata>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // The viewer asked for metadata only: one notification, for the metadata.
    let (m, _) = v.recv_until("metadata notification", |e| event(e).is_some());
    let items = event(&m).unwrap().child("items", EVENT).unwrap();
    assert_eq!(items.attr("node"), Some(meta));
    let info = items
        .child("item", EVENT)
        .unwrap()
        .child("metadata", meta)
        .unwrap()
        .child("info", meta)
        .unwrap();
    assert_eq!(info.attr("id"), Some(hash));
    // Then fetches the data by id (XEP-0084 §4.2).
    v.send(&format!(
        "<iq type='get' id='fetch' to='painter@localhost'><pubsub xmlns='{PUBSUB}'><items node='{data}'><item id='{hash}'/></items></pubsub></iq>"
    ));
    let (r, skipped) = v.recv_until("avatar data", |e| e.attr("id") == Some("fetch"));
    assert!(
        skipped.iter().all(|e| event(e).is_none()),
        "no data notification: {skipped:?}"
    );
    let d = r
        .child("pubsub", PUBSUB)
        .unwrap()
        .child("items", PUBSUB)
        .unwrap()
        .child("item", PUBSUB)
        .unwrap();
    assert_eq!(d.child("data", data).unwrap().text(), png);
    // OMEMO: the device list is published open, so a stranger can fetch it.
    let devicelist = "eu.siacs.conversations.axolotl.devicelist";
    let r = publish_with_options(
        &mut p,
        "o",
        devicelist,
        "<item id='current'><list xmlns='eu.siacs.conversations.axolotl'><device id='12345'/></list></item>",
        &[("pubsub#access_model", "open")],
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    v.recv_until("device list notification", |e| {
        event(e)
            .and_then(|ev| ev.child("items", EVENT))
            .and_then(|i| i.attr("node"))
            == Some(devicelist)
    });
    let mut x = Client::login(&s, "stranger", "pw", None);
    x.send(&format!(
        "<iq type='get' id='dl' to='painter@localhost'><pubsub xmlns='{PUBSUB}'><items node='{devicelist}'/></pubsub></iq>"
    ));
    let r = x
        .recv_until("device list", |e| e.attr("id") == Some("dl"))
        .0;
    let list = r
        .child("pubsub", PUBSUB)
        .unwrap()
        .child("items", PUBSUB)
        .unwrap()
        .child("item", PUBSUB)
        .unwrap()
        .child("list", "eu.siacs.conversations.axolotl")
        .unwrap();
    assert_eq!(
        list.child("device", "eu.siacs.conversations.axolotl")
            .unwrap()
            .attr("id"),
        Some("12345")
    );
}

/// A stranger's directed presence with caps makes the service ask nothing (aioxmpp's
/// entity-caps test found the query): only contacts the owner's presence goes to are tracked.
#[test]
fn caps_01_a_strangers_directed_presence_is_not_queried() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("host", "pw");
    s.adduser("visitor", "pw");
    let h = Client::online(&s, "host", "pw", None);
    let mut v = Client::online(&s, "visitor", "pw", None);
    let caps = ClientCaps::new("caps01-stranger", &[]);
    v.send(
        &caps
            .presence()
            .replace("<presence>", &format!("<presence to='{}'>", h.full())),
    );
    let got = v.collect_for(Duration::from_millis(500));
    assert!(got.iter().all(|e| !is_caps_query(e)), "{got:?}");
}

const BM_NATIVE: &str = "urn:xmpp:bookmarks:1";
const BM_LEGACY: &str = "storage:bookmarks";

fn private_bookmarks(c: &mut Client, id: &str) -> Element {
    c.send(&format!(
        "<iq type='get' id='{id}'><query xmlns='jabber:iq:private'><storage xmlns='{BM_LEGACY}'/></query></iq>"
    ));
    let r = c
        .recv_until("private bookmarks", |e| e.attr("id") == Some(id))
        .0;
    r.child("query", "jabber:iq:private")
        .unwrap()
        .child("storage", BM_LEGACY)
        .expect("storage")
        .clone()
}

fn native_bookmarks(c: &mut Client, id: &str) -> Vec<(String, Element)> {
    c.send(&format!(
        "<iq type='get' id='{id}'><pubsub xmlns='{PUBSUB}'><items node='{BM_NATIVE}'/></pubsub></iq>"
    ));
    let r = c
        .recv_until("native bookmarks", |e| e.attr("id") == Some(id))
        .0;
    let mut out: Vec<(String, Element)> = r
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .map(|items| {
            items
                .elements()
                .map(|i| {
                    (
                        i.attr("id").unwrap().to_string(),
                        i.child("conference", BM_NATIVE)
                            .expect("native payload")
                            .clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// XEP-0402 §6.3 (the XEP-0411 path): bookmarks stored through XEP-0049 appear as native
/// items, changes publish only what changed and retract what went; native publishes and
/// retractions appear in private storage, its URLs kept. Announced as `#compat`.
#[test]
fn xep0402_bookmarks_unified_with_private_storage() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("reader", "pw");
    let mut c = Client::online(&s, "reader", "pw", None);
    c.send("<iq type='get' id='i'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let r = c.recv_until("disco", |e| e.attr("id") == Some("i")).0;
    assert!(format!("{r:?}").contains("urn:xmpp:bookmarks:1#compat"));
    // The client wants native bookmark notifications.
    let notify = format!("{BM_NATIVE}+notify");
    let caps = ClientCaps::new("x402", &[&notify]);
    c.send(&caps.presence());
    answer_caps_for(&mut c, &caps, Duration::from_millis(500));
    // A legacy client stores two rooms and a URL.
    c.send(&format!(
        "<iq type='set' id='s1'><query xmlns='jabber:iq:private'><storage xmlns='{BM_LEGACY}'>\
         <conference jid='a@conference.localhost' name='A' autojoin='true'><nick>me</nick></conference>\
         <conference jid='b@conference.localhost' name='B'/>\
         <url name='Site' url='https://example.org/'/></storage></query></iq>"
    ));
    let (got, _) = c.recv_all(&[
        ("set result", &|e: &Element| e.attr("id") == Some("s1")),
        ("a published", &|e: &Element| {
            event(e)
                .and_then(|ev| ev.child("items", EVENT))
                .and_then(|i| i.child("item", EVENT))
                .and_then(|i| i.attr("id"))
                == Some("a@conference.localhost")
        }),
        ("b published", &|e: &Element| {
            event(e)
                .and_then(|ev| ev.child("items", EVENT))
                .and_then(|i| i.child("item", EVENT))
                .and_then(|i| i.attr("id"))
                == Some("b@conference.localhost")
        }),
    ]);
    assert_eq!(got[0].attr("type"), Some("result"));
    let native = native_bookmarks(&mut c, "n1");
    assert_eq!(native.len(), 2, "{native:?}");
    assert_eq!(native[0].0, "a@conference.localhost");
    assert_eq!(native[0].1.attr("autojoin"), Some("true"));
    assert_eq!(native[0].1.child("nick", BM_NATIVE).unwrap().text(), "me");
    assert_eq!(native[1].1.attr("autojoin"), Some("false"));
    // Again, with B removed and A unchanged: B is retracted, A not republished.
    c.send(&format!(
        "<iq type='set' id='s2'><query xmlns='jabber:iq:private'><storage xmlns='{BM_LEGACY}'>\
         <conference jid='a@conference.localhost' name='A' autojoin='true'><nick>me</nick></conference>\
         <url name='Site' url='https://example.org/'/></storage></query></iq>"
    ));
    let (_, others) = c.recv_all(&[
        ("set result", &|e: &Element| e.attr("id") == Some("s2")),
        ("b retracted", &|e: &Element| {
            event(e)
                .and_then(|ev| ev.child("items", EVENT))
                .and_then(|i| i.child("retract", EVENT))
                .and_then(|r| r.attr("id"))
                == Some("b@conference.localhost")
        }),
    ]);
    let mut more = others;
    more.extend(c.collect_for(Duration::from_millis(300)));
    assert!(
        more.iter().all(|e| event(e)
            .and_then(|ev| ev.child("items", EVENT))
            .and_then(|i| i.child("item", EVENT))
            .is_none()),
        "XEP-0402 §6.3.2: nothing republished for an unchanged room: {more:?}"
    );
    assert_eq!(native_bookmarks(&mut c, "n2").len(), 1);
    // A native client adds C (with XEP-0402's publish-options): the legacy list has it, and
    // still the URL.
    let r = publish_with_options(
        &mut c,
        "p",
        BM_NATIVE,
        &format!("<item id='c@conference.localhost'><conference xmlns='{BM_NATIVE}' name='C' autojoin='true'><nick>n</nick></conference></item>"),
        &[("pubsub#persist_items", "true"), ("pubsub#access_model", "whitelist"), ("pubsub#send_last_published_item", "never"), ("pubsub#max_items", "max")],
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let legacy = private_bookmarks(&mut c, "l1");
    let jids: Vec<&str> = legacy.elements().filter_map(|e| e.attr("jid")).collect();
    assert_eq!(jids, ["a@conference.localhost", "c@conference.localhost"]);
    assert!(legacy.child("url", BM_LEGACY).is_some(), "the URL stays");
    // And retracts A: gone from the legacy list too.
    c.send(&format!(
        "<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='{BM_NATIVE}'><item id='a@conference.localhost'/></retract></pubsub></iq>"
    ));
    assert_eq!(
        c.recv_until("retract", |e| e.attr("id") == Some("r"))
            .0
            .attr("type"),
        Some("result")
    );
    let legacy = private_bookmarks(&mut c, "l2");
    let jids: Vec<&str> = legacy.elements().filter_map(|e| e.attr("jid")).collect();
    assert_eq!(jids, ["c@conference.localhost"]);
}

/// slixmpp's interop test found it: a contact whose caps presence reaches the owner while
/// the owner's roster item is still `to` (the owner subscribed first; the contact's own
/// subscription comes after, with no new presence) must still be asked and notified.
#[test]
fn pep_05_contact_present_before_the_subscription_completes() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("early", "pw");
    s.adduser("bird", "pw");
    let mut o = Client::online(&s, "early", "pw", None);
    let mut f = Client::login(&s, "bird", "pw", None);
    let notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("pep05-early", &[&notify]);
    // The contact is online with its caps before any subscription exists.
    f.send(&caps.presence());
    answer_caps_for(&mut f, &caps, Duration::from_millis(400));
    // The owner subscribes; the contact approves: its presence now reaches the owner, whose
    // item says `to`. The service asks for its caps.
    o.send("<presence to='bird@localhost' type='subscribe'/>");
    f.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some("early@localhost"))
    });
    f.send("<presence to='early@localhost' type='subscribed'/>");
    answer_caps_for(&mut f, &caps, Duration::from_millis(400));
    // Then the contact subscribes to the owner, who approves: `both`.
    f.send("<presence to='early@localhost' type='subscribe'/>");
    o.recv_until("subscribe", |e| {
        is_presence(e, Some("subscribe"), Some("bird@localhost"))
    });
    o.send("<presence to='bird@localhost' type='subscribed'/>");
    f.recv_until("subscribed", |e| {
        is_presence(e, Some("subscribed"), Some("early@localhost"))
    });
    std::thread::sleep(Duration::from_millis(200));
    publish(&mut o, "p", TUNE, Some("x"), &tune("Early"));
    let (m, _) = f.recv_until("notification", |e| notified_title(e).is_some());
    assert_eq!(m.attr("from"), Some("early@localhost"));
}

/// PEP-09: the owner's XEP-0191 blocklist stops notifications to a contact (tracked before
/// the block: its later presence no longer reaches the owner), and the last-item replay too.
#[test]
fn pep_09_no_notifications_to_blocked_contacts() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("blocker", "pw");
    s.adduser("pest", "pw");
    let mut o = Client::online(&s, "blocker", "pw", None);
    let mut f = Client::online(&s, "pest", "pw", None);
    befriend(&mut o, &mut f);
    let notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("pep09", &[&notify]);
    f.send(&caps.presence());
    answer_caps_for(&mut f, &caps, Duration::from_millis(400));
    publish(&mut o, "p1", TUNE, Some("a"), &tune("Before the block"));
    f.recv_until("notification", |e| notified_title(e).is_some());
    o.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='pest@localhost'/></block></iq>");
    o.recv_until("block result", |e| e.attr("id") == Some("b"));
    let _ = f.collect_for(Duration::from_millis(300));
    publish(&mut o, "p2", TUNE, Some("b"), &tune("After the block"));
    let got = f.collect_for(Duration::from_millis(500));
    assert!(got.iter().all(|e| event(e).is_none()), "PEP-09: {got:?}");
}

/// Many contacts with one new caps `ver` at once (everyone on the same client): the service
/// asks once, and every one of them gets notifications once the answer comes, however many
/// were waiting (the load generator's cold-caps run found 64 waiters per query, the rest
/// never served).
#[test]
fn caps_01_one_query_serves_every_contact_waiting_on_that_ver() {
    const FANS: usize = 70;
    let s = Server::start(&["--shards", "1"]);
    let fans: Vec<String> = (0..FANS).map(|i| format!("crowd{i}@localhost")).collect();
    let mut list = format!("idol@localhost pw {}\n", fans.join(","));
    for f in &fans {
        list.push_str(&format!("{f} pw idol@localhost\n"));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), list).unwrap();
    let out = s.admin(&["import", file.path().to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut idol = Client::online(&s, "idol", "pw", None);
    let notify = format!("{TUNE}+notify");
    let caps = ClientCaps::new("crowd", &[&notify]);
    let mut clients: Vec<Client> = (0..FANS)
        .map(|i| Client::login(&s, &format!("crowd{i}"), "pw", None))
        .collect();
    // All present at once, with the same new ver.
    for c in clients.iter_mut() {
        c.send(&caps.presence());
    }
    let mut queried = 0;
    for c in clients.iter_mut() {
        queried += answer_caps_for(c, &caps, Duration::from_millis(100));
    }
    assert_eq!(queried, 1, "CAPS-01: one query per ver on a shard");
    std::thread::sleep(Duration::from_millis(300));
    let _ = idol.collect_for(Duration::from_millis(100));
    publish(&mut idol, "p", TUNE, Some("hit"), &tune("For everyone"));
    for (i, c) in clients.iter_mut().enumerate() {
        let (m, _) = c.recv_until(&format!("notification for fan {i}"), |e| {
            notified_title(e).is_some()
        });
        assert_eq!(m.attr("from"), Some("idol@localhost"));
    }
}

// ---- explicit subscriptions (XEP-0060 §6.1, §6.2, §5.6, §8.8) -------------------------------

/// An IQ `body` (inside `<pubsub xmlns=ns>`) from `c` to `to`, answered.
fn pubsub_iq(c: &mut Client, id: &str, ty: &str, to: &str, ns: &str, body: &str) -> Element {
    c.send(&format!(
        "<iq type='{ty}' id='{id}' to='{to}'><pubsub xmlns='{ns}'>{body}</pubsub></iq>"
    ));
    c.recv_until("pubsub answer", |e| e.attr("id") == Some(id))
        .0
}

fn subscribe(c: &mut Client, id: &str, to: &str, node: &str, jid: &str) -> Element {
    pubsub_iq(
        c,
        id,
        "set",
        to,
        PUBSUB,
        &format!("<subscribe node='{node}' jid='{jid}'/>"),
    )
}

fn unsubscribe(c: &mut Client, id: &str, to: &str, node: &str, jid: &str) -> Element {
    pubsub_iq(
        c,
        id,
        "set",
        to,
        PUBSUB,
        &format!("<unsubscribe node='{node}' jid='{jid}'/>"),
    )
}

/// The JIDs of `<subscription/>` children of the `<subscriptions/>` in a result.
fn listed(r: &Element, ns: &str) -> Vec<String> {
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.child("pubsub", ns)
        .and_then(|p| p.child("subscriptions", ns))
        .expect("subscriptions")
        .elements()
        .map(|s| {
            assert_eq!(s.attr("subscription"), Some("subscribed"));
            s.attr("jid").unwrap().to_string()
        })
        .collect()
}

/// The XEP-0033 `replyto` of a notification, if any (PEP-10).
fn replyto(e: &Element) -> Option<String> {
    e.child("addresses", "http://jabber.org/protocol/address")?
        .elements()
        .find(|a| a.attr("type") == Some("replyto"))
        .and_then(|a| a.attr("jid"))
        .map(str::to_string)
}

/// The notifications among what `c` receives in `d`.
fn notifications(c: &mut Client, d: Duration) -> Vec<Element> {
    c.collect_for(d)
        .into_iter()
        .filter(|e| event(e).is_some())
        .collect()
}

/// PEP-06 and XEP-0060 §6.1/§6.2 on the wire: a client without caps subscribes explicitly.
/// A full-JID subscription gets exactly one notification, to that JID (the account's other
/// resource gets none); a bare-JID one is routed to the bare JID (RFC 6121 §8.5.2.1.1: every
/// available resource gets a headline), and not at all when a full JID of it is notified
/// already. The last item
/// follows a subscription (§6.1.7). Every error of §6.1.3 and §6.2.3 PEP can meet. PEP-10:
/// presence subscribers see the publishing resource as `replyto`.
#[test]
fn pep_06_10_explicit_subscriptions() {
    let s = Server::start(&["--shards", "2"]);
    s.adduser("poet", "pw");
    s.adduser("reader", "pw");
    s.adduser("other", "pw");
    let mut o = Client::online(&s, "poet", "pw", Some("desk"));
    let mut c = Client::online(&s, "reader", "pw", Some("couch"));
    befriend(&mut o, &mut c);
    let mut c2 = Client::online(&s, "reader", "pw", Some("bed"));
    let (ob, cb, cf) = ("poet@localhost", "reader@localhost", c.full());
    publish(&mut o, "p0", TUNE, Some("t0"), &tune("First"));
    let _ = notifications(&mut c, Duration::from_millis(200));

    // §6.1.3.12: no such node.
    let r = subscribe(&mut c, "s0", ob, MOOD, &cf);
    assert_eq!(stanza_error(&r).unwrap().0, "item-not-found");
    // §6.1.3.1: someone else's JID.
    let r = subscribe(&mut c, "s1", ob, TUNE, "other@localhost");
    assert_eq!(stanza_error(&r).unwrap().0, "bad-request");
    assert_eq!(app_error(&r).as_deref(), Some("invalid-jid"));
    // §6.1.2: the full JID, answered with the subscription; then the last item (§6.1.7).
    c.send(&format!(
        "<iq type='set' id='s2' to='{ob}'><pubsub xmlns='{PUBSUB}'><subscribe node='{TUNE}' jid='{cf}'/></pubsub></iq>"
    ));
    let (got, _) = c.recv_all(&[
        ("subscribe result", &|e: &Element| {
            e.attr("id") == Some("s2")
        }),
        ("last item", &|e: &Element| notified_title(e).is_some()),
    ]);
    let sub = got[0]
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("subscription", PUBSUB))
        .expect("subscription");
    assert_eq!(
        (sub.attr("node"), sub.attr("jid"), sub.attr("subscription")),
        (Some(TUNE), Some(cf.as_str()), Some("subscribed"))
    );
    assert_eq!(notified_title(&got[1]).as_deref(), Some("First"));
    assert_eq!(got[1].attr("to"), Some(cf.as_str()));
    assert!(got[1].child("delay", "urn:xmpp:delay").is_some());

    // PEP-06: exactly one notification, to the subscribed full JID; PEP-10: replyto.
    let _ = c2.collect_for(Duration::from_millis(100));
    publish(&mut o, "p1", TUNE, Some("t1"), &tune("Second"));
    let got = notifications(&mut c, Duration::from_millis(500));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(notifications(&mut c2, Duration::from_millis(100)).is_empty());
    assert_eq!(got[0].attr("from"), Some(ob));
    assert_eq!(replyto(&got[0]).as_deref(), Some("poet@localhost/desk"));

    // The bare JID too: still one, since its full JID is notified (at most once).
    // The result and the last item (again, to the bare JID: each resource) in either order.
    c.send(&format!(
        "<iq type='set' id='s3' to='{ob}'><pubsub xmlns='{PUBSUB}'><subscribe node='{TUNE}' jid='{cb}'/></pubsub></iq>"
    ));
    let (got, _) = c.recv_all(&[
        ("subscribe result", &|e: &Element| {
            e.attr("id") == Some("s3")
        }),
        ("last item", &|e: &Element| notified_title(e).is_some()),
    ]);
    assert_eq!(got[0].attr("type"), Some("result"), "{:?}", got[0]);
    assert!(got[1].child("delay", "urn:xmpp:delay").is_some());
    let got = notifications(&mut c2, Duration::from_millis(300));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(notifications(&mut c, Duration::from_millis(100)).is_empty());
    publish(&mut o, "p2", TUNE, Some("t2"), &tune("Third"));
    let got = notifications(&mut c, Duration::from_millis(500));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(notifications(&mut c2, Duration::from_millis(100)).is_empty());
    // §5.6: the requester's own subscriptions, both.
    let mine = pubsub_iq(&mut c, "l1", "get", ob, PUBSUB, "<subscriptions/>");
    let mut jids = listed(&mine, PUBSUB);
    jids.sort();
    assert_eq!(jids, [cb.to_string(), cf.clone()]);

    // Without the full one: one, addressed to the bare JID.
    assert_eq!(
        unsubscribe(&mut c, "u1", ob, TUNE, &cf).attr("type"),
        Some("result")
    );
    publish(&mut o, "p3", TUNE, Some("t3"), &tune("Fourth"));
    for r in [&mut c, &mut c2] {
        let got = notifications(r, Duration::from_millis(500));
        assert_eq!(got.len(), 1, "PEP-06: one each, by the bare JID: {got:?}");
        assert_eq!(notified_title(&got[0]).as_deref(), Some("Fourth"));
    }

    // §6.2.3.2: not subscribed (any more).
    let r = unsubscribe(&mut c, "u2", ob, TUNE, &cf);
    assert_eq!(stanza_error(&r).unwrap().0, "unexpected-request");
    assert_eq!(app_error(&r).as_deref(), Some("not-subscribed"));
    // §6.2.3.3: someone else's subscription.
    let r = unsubscribe(&mut c, "u3", ob, TUNE, "other@localhost");
    assert_eq!(stanza_error(&r).unwrap().0, "forbidden");
    // §6.2.3.4: no such node.
    let r = unsubscribe(&mut c, "u4", ob, MOOD, cb);
    assert_eq!(stanza_error(&r).unwrap().0, "item-not-found");

    // §8.8: owner only; the owner lists and removes.
    let r = pubsub_iq(
        &mut c,
        "m0",
        "get",
        ob,
        OWNER,
        &format!("<subscriptions node='{TUNE}'/>"),
    );
    assert_eq!(stanza_error(&r).unwrap().0, "forbidden");
    let own = format!("<subscriptions node='{TUNE}'/>");
    let r = pubsub_iq(&mut o, "m1", "get", ob, OWNER, &own);
    assert_eq!(listed(&r, OWNER), [cb]);
    let r = pubsub_iq(
        &mut o,
        "m2",
        "set",
        ob,
        OWNER,
        &format!("<subscriptions node='{TUNE}'><subscription jid='{cb}' subscription='none'/></subscriptions>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert!(listed(&pubsub_iq(&mut o, "m3", "get", ob, OWNER, &own), OWNER).is_empty());
    publish(&mut o, "p4", TUNE, Some("t4"), &tune("Fifth"));
    assert!(notifications(&mut c, Duration::from_millis(400)).is_empty());

    // PEP-11 on subscribe: a stranger and the presence model.
    let mut x = Client::online(&s, "other", "pw", Some("x"));
    let r = subscribe(&mut x, "x1", ob, TUNE, "other@localhost");
    assert_eq!(stanza_error(&r).unwrap().0, "not-authorized");
    assert_eq!(
        app_error(&r).as_deref(),
        Some("presence-subscription-required")
    );
    // An open node: the stranger subscribes and is notified, without replyto (PEP-10).
    let mood = |m: &str| format!("<item><mood xmlns='{MOOD}'><{m}/></mood></item>");
    let open = [("pubsub#access_model", "open")];
    let r = publish_with_options(&mut o, "p5", MOOD, &mood("happy"), &open);
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(
        subscribe(&mut x, "x2", ob, MOOD, "other@localhost").attr("type"),
        Some("result")
    );
    let _ = notifications(&mut x, Duration::from_millis(200));
    let r = publish_with_options(&mut o, "p6", MOOD, &mood("sad"), &open);
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let got = notifications(&mut x, Duration::from_millis(500));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(replyto(&got[0]), None, "PEP-10: no presence subscription");

    // Deleting the node notifies its subscribers, and takes the subscriptions.
    let r = pubsub_iq(
        &mut o,
        "d1",
        "set",
        ob,
        OWNER,
        &format!("<delete node='{MOOD}'/>"),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let (m, _) = x.recv_until("delete event", |e| {
        event(e).and_then(|ev| ev.child("delete", EVENT)).is_some()
    });
    assert_eq!(m.attr("from"), Some(ob));
    let r = pubsub_iq(&mut x, "x3", "get", ob, PUBSUB, "<subscriptions/>");
    assert!(listed(&r, PUBSUB).is_empty());
}

/// `--pep-max-subscribers`: beyond it `policy-violation` + `<too-many-subscriptions/>`; an
/// owner's change that would pass it changes nothing. Acknowledged subscriptions survive
/// kill -9.
#[test]
fn xep0060_6_1_subscription_bound_and_durability() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--shards", "1", "--pep-max-subscribers", "1"];
    let own = format!("<subscriptions node='{TUNE}'/>");
    {
        let s = Server::start_on(dir.path(), &flags);
        for u in ["keeper", "first", "second"] {
            s.adduser(u, "pw");
        }
        let mut o = Client::online(&s, "keeper", "pw", None);
        let mut a = Client::online(&s, "first", "pw", None);
        let mut b = Client::online(&s, "second", "pw", None);
        befriend(&mut o, &mut a);
        befriend(&mut o, &mut b);
        publish(&mut o, "p", TUNE, Some("t"), &tune("Bounded"));
        let ok = subscribe(&mut a, "a1", "keeper@localhost", TUNE, "first@localhost");
        assert_eq!(ok.attr("type"), Some("result"), "{ok:?}");
        let r = subscribe(&mut b, "b1", "keeper@localhost", TUNE, "second@localhost");
        assert_eq!(stanza_error(&r).unwrap().0, "policy-violation");
        assert_eq!(app_error(&r).as_deref(), Some("too-many-subscriptions"));
        // Remove first, add second and a third: over the bound, so nothing changes.
        let r = pubsub_iq(
            &mut o,
            "m1",
            "set",
            "keeper@localhost",
            OWNER,
            &format!(
                "<subscriptions node='{TUNE}'><subscription jid='first@localhost' subscription='none'/>\
                 <subscription jid='second@localhost' subscription='subscribed'/>\
                 <subscription jid='third@localhost' subscription='subscribed'/></subscriptions>"
            ),
        );
        assert_eq!(stanza_error(&r).unwrap().0, "policy-violation", "{r:?}");
        let r = pubsub_iq(&mut o, "m2", "get", "keeper@localhost", OWNER, &own);
        assert_eq!(listed(&r, OWNER), ["first@localhost"]);
        let status = s.signal_and_wait(libc::SIGKILL).expect("killed");
        assert!(!status.success());
    }
    let s = Server::start_on(dir.path(), &flags);
    let mut o = Client::login(&s, "keeper", "pw", None);
    let r = pubsub_iq(&mut o, "m3", "get", "keeper@localhost", OWNER, &own);
    assert_eq!(listed(&r, OWNER), ["first@localhost"]);
}

/// PEP-15 for explicit subscriptions: a contact that loses its presence subscription gets no
/// further notifications, and its subscription is cancelled.
#[test]
fn pep_15_losing_access_cancels_an_explicit_subscription() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("host", "pw");
    s.adduser("guest", "pw");
    let mut o = Client::online(&s, "host", "pw", None);
    let mut g = Client::online(&s, "guest", "pw", None);
    befriend(&mut o, &mut g);
    publish(&mut o, "p1", TUNE, Some("a"), &tune("Before"));
    let r = subscribe(&mut g, "s", "host@localhost", TUNE, "guest@localhost");
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let _ = notifications(&mut g, Duration::from_millis(300));
    o.send("<presence to='guest@localhost' type='unsubscribed'/>");
    g.recv_until("unsubscribed", |e| {
        is_presence(e, Some("unsubscribed"), Some("host@localhost"))
    });
    std::thread::sleep(Duration::from_millis(200));
    publish(&mut o, "p2", TUNE, Some("b"), &tune("After"));
    assert!(notifications(&mut g, Duration::from_millis(500)).is_empty());
    let own = format!("<subscriptions node='{TUNE}'/>");
    let r = pubsub_iq(&mut o, "l", "get", "host@localhost", OWNER, &own);
    assert!(listed(&r, OWNER).is_empty(), "PEP-15: cancelled");
}

/// The legacy list in the XEP-0048 PEP node (`storage:bookmarks`, item `current`), as the
/// owner reads it.
fn pep_legacy_bookmarks(c: &mut Client, id: &str) -> Element {
    c.send(&format!(
        "<iq type='get' id='{id}'><pubsub xmlns='{PUBSUB}'><items node='{BM_LEGACY}'/></pubsub></iq>"
    ));
    let r = c
        .recv_until("legacy PEP bookmarks", |e| e.attr("id") == Some(id))
        .0;
    let item = r
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.child("item", PUBSUB))
        .unwrap_or_else(|| panic!("no legacy item: {r:?}"));
    assert_eq!(item.attr("id"), Some("current"));
    item.child("storage", BM_LEGACY).expect("storage").clone()
}

fn rooms(storage: &Element) -> Vec<String> {
    storage
        .elements()
        .filter_map(|e| e.attr("jid"))
        .map(str::to_string)
        .collect()
}

/// XEP-0402 §6.3 `#compat-pep`: XEP-0048 bookmarks published to PEP (the XEP-0223 way) are
/// the same list as the native items and the private XML copy, whichever way a client writes
/// it; the node is private to the owner even without publish-options.
#[test]
fn xep0402_compat_pep_bookmarks_in_pep_are_the_same_list() {
    let s = Server::start(&["--shards", "1"]);
    s.adduser("keeper", "pw");
    s.adduser("peer", "pw");
    let mut c = Client::online(&s, "keeper", "pw", None);
    let mut p = Client::online(&s, "peer", "pw", None);
    befriend(&mut c, &mut p);
    c.send("<iq type='get' id='i'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    let r = c.recv_until("disco", |e| e.attr("id") == Some("i")).0;
    assert!(format!("{r:?}").contains("urn:xmpp:bookmarks:1#compat-pep"));
    // The owner's client wants legacy PEP bookmark notifications.
    let notify = format!("{BM_LEGACY}+notify");
    let caps = ClientCaps::new("compat-pep", &[&notify]);
    c.send(&caps.presence());
    answer_caps_for(&mut c, &caps, Duration::from_millis(500));
    // A XEP-0048-in-PEP client publishes two rooms and a URL, without publish-options.
    let r = publish(
        &mut c,
        "p1",
        BM_LEGACY,
        Some("current"),
        &format!(
            "<storage xmlns='{BM_LEGACY}'><conference jid='a@conference.localhost' name='A' autojoin='true'>\
             <nick>me</nick></conference><conference jid='b@conference.localhost'/>\
             <url name='Site' url='https://example.org/'/></storage>"
        ),
    );
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let native = native_bookmarks(&mut c, "n1");
    let ids: Vec<&str> = native.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["a@conference.localhost", "b@conference.localhost"]);
    assert_eq!(native[0].1.child("nick", BM_NATIVE).unwrap().text(), "me");
    let private = private_bookmarks(&mut c, "l1");
    assert_eq!(
        rooms(&private),
        ["a@conference.localhost", "b@conference.localhost"]
    );
    assert!(private.child("url", BM_LEGACY).is_some());
    // Private to the owner although no publish-options said so (XEP-0223 §3).
    p.send(&format!(
        "<iq type='get' id='g' to='keeper@localhost'><pubsub xmlns='{PUBSUB}'><items node='{BM_LEGACY}'/></pubsub></iq>"
    ));
    let r = p.recv_until("peer read", |e| e.attr("id") == Some("g")).0;
    assert_eq!(stanza_error(&r).unwrap().0, "not-allowed", "{r:?}");
    let _ = c.collect_for(Duration::from_millis(300));

    // A native client adds C: the PEP copy has A, B, C and the URL, and the owner's client
    // that wants the legacy node is told.
    c.send(&format!(
        "<iq type='set' id='p2'><pubsub xmlns='{PUBSUB}'><publish node='{BM_NATIVE}'>\
         <item id='c@conference.localhost'><conference xmlns='{BM_NATIVE}' name='C' autojoin='false'/></item>\
         </publish></pubsub></iq>"
    ));
    let (got, _) = c.recv_all(&[
        ("publish result", &|e: &Element| e.attr("id") == Some("p2")),
        ("legacy notified", &|e: &Element| {
            event(e)
                .and_then(|ev| ev.child("items", EVENT))
                .is_some_and(|i| i.attr("node") == Some(BM_LEGACY))
        }),
    ]);
    assert_eq!(got[0].attr("type"), Some("result"), "{:?}", got[0]);
    let notified = event(&got[1])
        .and_then(|ev| ev.child("items", EVENT))
        .and_then(|i| i.child("item", EVENT))
        .and_then(|i| i.child("storage", BM_LEGACY))
        .expect("the list in the notification");
    assert_eq!(rooms(notified).len(), 3);
    let legacy = pep_legacy_bookmarks(&mut c, "l2");
    assert_eq!(
        rooms(&legacy),
        [
            "a@conference.localhost",
            "b@conference.localhost",
            "c@conference.localhost"
        ]
    );
    assert!(legacy.child("url", BM_LEGACY).is_some(), "the URL stays");

    // A XEP-0049 client keeps only C: A and B are retracted natively, and the PEP copy
    // follows.
    c.send(&format!(
        "<iq type='set' id='s3'><query xmlns='jabber:iq:private'><storage xmlns='{BM_LEGACY}'>\
         <conference jid='c@conference.localhost' name='C' autojoin='false'/></storage></query></iq>"
    ));
    let r = c
        .recv_until("private set", |e| e.attr("id") == Some("s3"))
        .0;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let native = native_bookmarks(&mut c, "n3");
    let ids: Vec<&str> = native.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["c@conference.localhost"]);
    assert_eq!(
        rooms(&pep_legacy_bookmarks(&mut c, "l3")),
        ["c@conference.localhost"]
    );

    // Retracting natively empties both legacy copies.
    c.send(&format!(
        "<iq type='set' id='r'><pubsub xmlns='{PUBSUB}'><retract node='{BM_NATIVE}'><item id='c@conference.localhost'/></retract></pubsub></iq>"
    ));
    let r = c.recv_until("retract", |e| e.attr("id") == Some("r")).0;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert!(rooms(&pep_legacy_bookmarks(&mut c, "l4")).is_empty());
    assert!(rooms(&private_bookmarks(&mut c, "l5")).is_empty());
}
