//! RFC 6121 §4 presence (checklist IM-PRES-01..18), end to end: probes, broadcast, echo,
//! directed presence, unavailable presence, connection loss, syntax errors and the delivery
//! rules for inbound presence. Accounts that talk to each other are homed on different shards
//! of the shared 2-shard server, so every exchange crosses shards.

mod common;

use common::*;
use std::time::{Duration, Instant};
use xmppd::xml::Element;

/// How long "nothing arrives" is watched after a synchronising ping.
const QUIET: Duration = Duration::from_millis(350);
/// How long stale stanzas are drained between steps.
const DRAIN: Duration = Duration::from_millis(150);

fn user(s: &Server, prefix: &str, shard: usize) -> User {
    User::on_shard(s, prefix, shard, 2)
}

fn drain_all(clients: &mut [&mut Client]) {
    for c in clients.iter_mut() {
        c.drain(DRAIN);
    }
}

/// Everything `c` gets up to a ping round trip and then within `QUIET`.
fn settle(c: &mut Client) -> Vec<Element> {
    let mut seen = c.sync();
    seen.extend(c.collect_for(QUIET));
    seen
}

fn assert_no_presence_from(seen: &[Element], bare: &str, ctx: &str) {
    let got = presence_from(seen, bare);
    assert!(
        got.is_empty(),
        "{ctx}: unexpected presence from {bare}: {got:?}"
    );
}

/// A with one available resource and four contacts on the other shard, one per relation:
/// B (A has `to`), C (A has `from`), D (`both`), E (A has `none` + pending out).
struct Fixture {
    a: User,
    a1: Client,
    b: Client,
    c: Client,
    d: Client,
    e: Client,
}

fn fixture(s: &Server) -> Fixture {
    let a = user(s, "presA", 0);
    let (bu, cu, du, eu) = (
        user(s, "presB", 1),
        user(s, "presC", 1),
        user(s, "presD", 1),
        user(s, "presE", 1),
    );
    let mut a1 = a.online(s, "one");
    let mut b = bu.online(s, "b");
    let mut c = cu.online(s, "c");
    let mut d = du.online(s, "d");
    let mut e = eu.online(s, "e");
    subscribe_to(&mut a1, &mut b);
    subscribe_to(&mut c, &mut a1);
    subscribe_to(&mut a1, &mut d);
    subscribe_to(&mut d, &mut a1);
    let ja = a.jid.clone();
    a1.send(&format!("<presence to='{}' type='subscribe'/>", e.bare()));
    e.recv_until("subscribe", |x| {
        is_presence(x, Some("subscribe"), Some(&ja))
    });
    drain_all(&mut [&mut a1, &mut b, &mut c, &mut d, &mut e]);
    Fixture { a, a1, b, c, d, e }
}

/// IM-PRES-01: initial presence probes the `to`/`both` contacts (their servers answer with
/// their presence) and no one else; the probe is sent from the bare JID, so the answers are
/// addressed to the bare JID and reach every available resource of the account.
#[test]
fn im_pres_01_initial_presence_probes_to_and_both_contacts_from_the_bare_jid() {
    let s = Server::shared();
    let mut f = fixture(s);
    let (jc, je) = (f.c.bare(), f.e.bare());
    let (b_full, d_full) = (f.b.full(), f.d.full());
    let mut a2 = f.a.login(s, "two");
    a2.send("<presence/>");
    let me = a2.full();
    a2.recv_all(&[
        ("own echo", &|e: &Element| is_presence(e, None, Some(&me))),
        ("B's presence (to)", &|e: &Element| {
            is_presence(e, None, Some(&b_full))
        }),
        ("D's presence (both)", &|e: &Element| {
            is_presence(e, None, Some(&d_full))
        }),
    ]);
    let seen = settle(&mut a2);
    // C only has a subscription to A (from), E none: their presence is not requested.
    assert_no_presence_from(&seen, &jc, "a2 after initial presence");
    assert_no_presence_from(&seen, &je, "a2 after initial presence");
    // The probe answers went to A's bare JID: the already available resource gets them too.
    let (_, others) = f.a1.recv_all(&[
        ("B's presence again", &|e: &Element| {
            is_presence(e, None, Some(&b_full))
        }),
        ("D's presence again", &|e: &Element| {
            is_presence(e, None, Some(&d_full))
        }),
    ]);
    let mut seen = others;
    seen.extend(f.a1.collect_for(QUIET));
    assert_no_presence_from(&seen, &jc, "a1");
    assert_no_presence_from(&seen, &je, "a1");
    // Probes are the servers' business: no client ever sees one.
    for (name, c) in [
        ("B", &mut f.b),
        ("C", &mut f.c),
        ("D", &mut f.d),
        ("E", &mut f.e),
    ] {
        let probes: Vec<Element> = c
            .collect_for(Duration::from_millis(50))
            .into_iter()
            .filter(|e| is_presence(e, Some("probe"), None))
            .collect();
        assert!(probes.is_empty(), "{name} got a probe: {probes:?}");
    }
}

/// IM-PRES-02: initial presence is broadcast to the `from` and `both` contacts, never to a
/// `to` contact or one with only a pending request.
#[test]
fn im_pres_02_initial_presence_is_broadcast_to_from_and_both_contacts_only() {
    let s = Server::shared();
    let mut f = fixture(s);
    let ja = f.a.jid.clone();
    let mut a2 = f.a.login(s, "two");
    a2.send("<presence><status>two is here</status></presence>");
    let a2_full = a2.full();
    for (name, c) in [("C (from)", &mut f.c), ("D (both)", &mut f.d)] {
        let (p, _) = c.recv_until(&format!("{name}: A's initial presence"), |e| {
            is_presence(e, None, Some(&a2_full))
        });
        assert_eq!(status_of(&p).as_deref(), Some("two is here"), "{name}");
    }
    a2.sync();
    for (name, c) in [("B (to)", &mut f.b), ("E (none+PO)", &mut f.e)] {
        let seen = c.collect_for(QUIET);
        assert_no_presence_from(&seen, &ja, name);
    }
}

/// IM-PRES-03: the sending resource gets its own presence back, initial and later.
#[test]
fn im_pres_03_presence_is_echoed_to_the_sending_resource() {
    let s = Server::shared();
    let a = user(s, "echo", 0);
    let mut c = a.login(s, "mirror");
    let me = c.full();
    c.send("<presence><show>chat</show><status>first</status><priority>5</priority></presence>");
    let (p, _) = c.recv_until("initial echo", |e| is_presence(e, None, Some(&me)));
    assert_eq!(
        p.child("show", "jabber:client")
            .map(|x| x.text())
            .as_deref(),
        Some("chat")
    );
    assert_eq!(status_of(&p).as_deref(), Some("first"));
    c.send("<presence><show>away</show><status>second</status></presence>");
    let (p, _) = c.recv_until("update echo", |e| is_presence(e, None, Some(&me)));
    assert_eq!(status_of(&p).as_deref(), Some("second"));
}

/// IM-PRES-04: a new available resource learns the presence of the account's other available
/// resources, and they learn its presence; a connected but unavailable resource is neither
/// reported nor told.
#[test]
fn im_pres_04_new_resource_gets_the_other_resources_presence() {
    let s = Server::shared();
    let a = user(s, "multi", 0);
    let mut a1 = a.available(s, "one", "<presence><status>I am one</status></presence>");
    let mut a3 = a.login(s, "three");
    let a3_full = a3.full();
    let mut a2 = a.login(s, "two");
    a2.send("<presence><status>I am two</status></presence>");
    let (a1_full, a2_full) = (a1.full(), a2.full());
    let (got, _) = a2.recv_all(&[
        ("own echo", &|e: &Element| {
            is_presence(e, None, Some(&a2_full))
        }),
        ("one's presence", &|e: &Element| {
            is_presence(e, None, Some(&a1_full))
        }),
    ]);
    assert_eq!(status_of(&got[1]).as_deref(), Some("I am one"));
    let (p, _) = a1.recv_until("two's presence", |e| is_presence(e, None, Some(&a2_full)));
    assert_eq!(status_of(&p).as_deref(), Some("I am two"));
    let seen = settle(&mut a2);
    let from_three: Vec<&Element> = seen
        .iter()
        .filter(|e| e.name == "presence" && e.attr("from") == Some(a3_full.as_str()))
        .collect();
    assert!(from_three.is_empty(), "{from_three:?}");
    let seen = a3.collect_for(Duration::from_millis(100));
    assert!(
        seen.iter().all(|e| e.name != "presence"),
        "an unavailable resource got presence: {seen:?}"
    );
}

/// IM-PRES-06: a probe from an authorized contact is answered with the latest presence of
/// each available resource, from each full JID (not with older presence, not for a connected
/// but unavailable resource).
#[test]
fn im_pres_06_probe_answer_has_the_latest_presence_of_each_available_resource() {
    let s = Server::shared();
    let (a, b) = (user(s, "prober", 0), user(s, "probed", 1));
    let mut a1 = a.online(s, "one");
    let mut b1 = b.available(s, "b1", "<presence><status>old</status></presence>");
    let mut b2 = b.available(
        s,
        "b2",
        "<presence><show>xa</show><status>second resource</status></presence>",
    );
    let b3 = b.login(s, "b3");
    subscribe_to(&mut a1, &mut b1);
    b1.send("<presence><show>dnd</show><status>latest</status></presence>");
    let b1_full = b1.full();
    a1.recv_until("b1's update", |e| {
        is_presence(e, None, Some(&b1_full)) && status_of(e).as_deref() == Some("latest")
    });
    drain_all(&mut [&mut a1, &mut b1, &mut b2]);
    let mut a2 = a.online(s, "two");
    let b2_full = b2.full();
    let (got, _) = a2.recv_all(&[
        ("b1's presence", &|e: &Element| {
            is_presence(e, None, Some(&b1_full))
        }),
        ("b2's presence", &|e: &Element| {
            is_presence(e, None, Some(&b2_full))
        }),
    ]);
    assert_eq!(status_of(&got[0]).as_deref(), Some("latest"));
    assert_eq!(
        got[0]
            .child("show", "jabber:client")
            .map(|x| x.text())
            .as_deref(),
        Some("dnd")
    );
    assert_eq!(status_of(&got[1]).as_deref(), Some("second resource"));
    let seen = settle(&mut a2);
    let extra = presence_from(&seen, &b.jid);
    assert!(
        extra.is_empty(),
        "more presence from B than one per available resource: {extra:?}"
    );
    drop(b3);
}

/// IM-PRES-07: a probe for a contact with no available resource is answered with unavailable
/// presence from the contact's bare JID.
#[test]
fn im_pres_07_probe_for_offline_contact_is_answered_unavailable_from_bare_jid() {
    let s = Server::shared();
    let (a, b) = (user(s, "waiter", 0), user(s, "gone", 1));
    let mut a1 = a.online(s, "one");
    let mut b1 = b.online(s, "b1");
    subscribe_to(&mut a1, &mut b1);
    let b1_full = b1.full();
    b1.close();
    a1.recv_until("b1 leaves", |e| {
        is_presence(e, Some("unavailable"), Some(&b1_full))
    });
    let mut a2 = a.login(s, "two");
    a2.send("<presence/>");
    let (u, _) = a2.recv_until("unavailable for the probe", |e| {
        is_presence(e, Some("unavailable"), None)
    });
    assert_eq!(u.attr("from"), Some(b.jid.as_str()), "{u:?}");
}

/// IM-PRES-08: later broadcasts reach the `from`/`both` contacts and the account's other
/// available resources, never `to` or `none` contacts.
#[test]
fn im_pres_08_later_broadcasts_reach_from_and_both_contacts_only() {
    let s = Server::shared();
    let mut f = fixture(s);
    let ja = f.a.jid.clone();
    let mut a2 = f.a.online(s, "two");
    drain_all(&mut [&mut f.a1, &mut f.c, &mut f.d, &mut a2]);
    f.a1.send("<presence><show>away</show><status>later</status></presence>");
    let a1_full = f.a1.full();
    for (name, c) in [
        ("C (from)", &mut f.c),
        ("D (both)", &mut f.d),
        ("a2", &mut a2),
    ] {
        let (p, _) = c.recv_until(&format!("{name}: the update"), |e| {
            is_presence(e, None, Some(&a1_full))
        });
        assert_eq!(status_of(&p).as_deref(), Some("later"), "{name}");
    }
    f.a1.sync();
    for (name, c) in [("B (to)", &mut f.b), ("E (none+PO)", &mut f.e)] {
        let seen = c.collect_for(QUIET);
        assert_no_presence_from(&seen, &ja, name);
    }
}

/// IM-PRES-08 at scale: one presence change of a user with 50 `both` contacts, all online on
/// both shards, reaches each contact exactly once.
#[test]
fn im_pres_08_one_change_reaches_fifty_contacts_exactly_once() {
    const N: usize = 50;
    let s = Server::shared();
    let started = Instant::now();
    let u = user(s, "popular", 0);
    let contacts: Vec<User> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    (0..N)
                        .filter(|i| i % 4 == t)
                        .map(|i| (i, user(s, "fan", i % 2)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, User)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, c)| c).collect()
    });
    let mut uc = u.online(s, "main");
    let mut cs: Vec<Client> = std::thread::scope(|scope| {
        let handles: Vec<_> = contacts
            .chunks(N / 4 + 1)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|c| c.online(s, "r"))
                        .collect::<Vec<Client>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let setup_logins = started.elapsed();
    // The user pre-approves everyone; the roster pushes say when that is durable.
    uc.send(&format!(
        "<iq type='get' id='r'><query xmlns='{NS_ROSTER}'/></iq>"
    ));
    uc.recv_until("roster", |e| e.attr("id") == Some("r"));
    for c in &contacts {
        uc.send(&format!("<presence to='{}' type='subscribed'/>", c.jid));
    }
    let mut approved = 0;
    let mut read = 0;
    while approved < N {
        let e = uc.recv_el();
        read += 1;
        assert!(read < 10 * N, "pre-approval pushes missing");
        if roster_push_item(&e).is_some_and(|i| i.attr("approved") == Some("true")) {
            approved += 1;
        }
    }
    // Each contact pre-approves the user and subscribes: accepted automatically.
    for c in cs.iter_mut() {
        c.send(&format!("<presence to='{}' type='subscribed'/>", u.jid));
        c.send(&format!("<presence to='{}' type='subscribe'/>", u.jid));
    }
    for c in cs.iter_mut() {
        c.recv_until("automatic subscribed", |e| {
            is_presence(e, Some("subscribed"), Some(&u.jid))
        });
    }
    // The user subscribes to everyone: accepted automatically too. Now all are `both`.
    for c in &contacts {
        uc.send(&format!("<presence to='{}' type='subscribe'/>", c.jid));
    }
    let mut subscribed = 0;
    read = 0;
    while subscribed < N {
        let e = uc.recv_el();
        read += 1;
        assert!(read < 10 * N, "automatic answers missing");
        if is_presence(&e, Some("subscribed"), None) {
            subscribed += 1;
        }
    }
    let setup = started.elapsed();
    // One change.
    uc.send("<presence><status>fifty-change</status></presence>");
    let me = uc.full();
    let is_change = |e: &Element| {
        is_presence(e, None, Some(&me)) && status_of(e).as_deref() == Some("fifty-change")
    };
    for (i, c) in cs.iter_mut().enumerate() {
        c.recv_until(&format!("contact {i}: the change"), is_change);
    }
    uc.sync();
    std::thread::sleep(QUIET);
    for (i, c) in cs.iter_mut().enumerate() {
        let dup: Vec<Element> = c
            .drain(Duration::from_millis(10))
            .into_iter()
            .filter(|e| is_change(e))
            .collect();
        assert!(dup.is_empty(), "contact {i} got the change twice: {dup:?}");
    }
    let total = started.elapsed();
    eprintln!("50 contacts: logins after {setup_logins:?}, setup {setup:?}, total {total:?}");
    assert!(total < Duration::from_secs(20), "too slow: {total:?}");
}

/// IM-PRES-09 and edge case 33: unavailable presence goes to the contacts, the account's other
/// resources and the directed-presence targets; afterwards the still connected resource gets
/// no broadcast presence and no bare-JID messages, but still gets full-JID stanzas.
#[test]
fn im_pres_09_unavailable_is_broadcast_and_ends_delivery_to_the_resource() {
    let s = Server::shared();
    let a = user(s, "leaver", 0);
    let (bu, cu, xu) = (
        user(s, "seen", 1),
        user(s, "watcher", 1),
        user(s, "stranger", 1),
    );
    let mut a1 = a.online(s, "one");
    let mut a2 = a.online(s, "two");
    let mut b = bu.online(s, "b");
    let mut c = cu.online(s, "c");
    let mut x = xu.online(s, "x");
    subscribe_to(&mut a1, &mut b);
    subscribe_to(&mut c, &mut a1);
    let a1_full = a1.full();
    a1.send(&format!(
        "<presence to='{}'><status>directed</status></presence>",
        x.full()
    ));
    x.recv_until("directed presence", |e| {
        is_presence(e, None, Some(&a1_full))
    });
    drain_all(&mut [&mut a1, &mut a2, &mut b, &mut c, &mut x]);

    a1.send("<presence type='unavailable'><status>bye</status></presence>");
    for (name, cl) in [
        ("contact", &mut c),
        ("own resource", &mut a2),
        ("directed target", &mut x),
    ] {
        let (u, _) = cl.recv_until(&format!("{name}: a1 unavailable"), |e| {
            is_presence(e, Some("unavailable"), Some(&a1_full))
        });
        assert_eq!(status_of(&u).as_deref(), Some("bye"), "{name}");
    }
    // Still connected.
    a1.sync();
    a1.drain(DRAIN);

    // Broadcasts from the account's other resource and from a contact.
    a2.send("<presence><status>two still here</status></presence>");
    c.recv_until("a2's update", |e| {
        status_of(e).as_deref() == Some("two still here")
    });
    b.send("<presence><status>b changed</status></presence>");
    a2.recv_until("b's update", |e| {
        status_of(e).as_deref() == Some("b changed")
    });
    // Directed presence and a chat message to the bare JID, then a message to a1's full JID.
    x.send(&format!(
        "<presence to='{}'><status>to bare</status></presence>",
        a.jid
    ));
    a2.recv_until("x's directed presence", |e| {
        status_of(e).as_deref() == Some("to bare")
    });
    x.send(&format!(
        "<message to='{}' type='chat' id='m1'><body>to the bare JID</body></message>",
        a.jid
    ));
    a2.recv_until("bare-JID message", |e| {
        e.name == "message" && e.attr("id") == Some("m1")
    });
    x.send(&format!(
        "<message to='{a1_full}' type='chat' id='m2'><body>to a1</body></message>"
    ));
    let (m, before) = a1.recv_until("full-JID message", |e| {
        e.name == "message" && e.attr("id") == Some("m2")
    });
    assert_eq!(m.attr("from"), Some(x.full().as_str()));
    let mut seen = before;
    seen.extend(settle(&mut a1));
    assert!(
        seen.is_empty(),
        "an unavailable resource got broadcast presence or bare-JID stanzas: {seen:?}"
    );
}

/// IM-PRES-10: a stream that ends without unavailable presence (TCP loss, closing the stream,
/// a stream error) makes the server send unavailable from that full JID to the contacts, the
/// account's other resources and the directed-presence targets.
#[test]
fn im_pres_10_session_end_generates_unavailable() {
    let s = Server::shared();
    let a = user(s, "dropper", 0);
    let (cu, xu) = (user(s, "mourner", 1), user(s, "bystander", 1));
    let mut a0 = a.online(s, "stays");
    let mut c = cu.online(s, "c");
    let mut x = xu.online(s, "x");
    subscribe_to(&mut c, &mut a0);
    drain_all(&mut [&mut a0, &mut c, &mut x]);
    let x_full = x.full();
    for how in ["tcp loss", "stream close", "stream error"] {
        let mut a1 = a.online(s, how.split(' ').next_back().unwrap());
        let a1_full = a1.full();
        a1.send(&format!("<presence to='{x_full}'/>"));
        x.recv_until("directed presence", |e| {
            is_presence(e, None, Some(&a1_full))
        });
        c.recv_until("a1 available", |e| is_presence(e, None, Some(&a1_full)));
        a0.recv_until("a1 available", |e| is_presence(e, None, Some(&a1_full)));
        match how {
            "tcp loss" => a1.drop_tcp(),
            "stream close" => a1.close(),
            _ => {
                // Not well-formed: the server closes the stream with an error.
                a1.send("<message><body>oops</message></message>");
                a1.expect_stream_error("not-well-formed");
            }
        }
        for (name, cl) in [
            ("contact", &mut c),
            ("own resource", &mut a0),
            ("directed target", &mut x),
        ] {
            cl.recv_until(&format!("{how}: {name} gets unavailable"), |e| {
                is_presence(e, Some("unavailable"), Some(&a1_full))
            });
        }
    }
}

/// IM-PRES-11: directed presence goes only to its addressee; it is remembered for entities
/// that are not subscribers and withdrawn with unavailable presence when the resource goes
/// unavailable, unless directed unavailable presence was sent already; a subscriber gets the
/// broadcast unavailable once only.
#[test]
fn im_pres_11_directed_presence_is_routed_alone_and_withdrawn_once() {
    let s = Server::shared();
    let a = user(s, "director", 0);
    let (cu, xu, yu) = (user(s, "fan", 1), user(s, "target", 1), user(s, "other", 1));
    let mut a1 = a.online(s, "one");
    let mut a2 = a.online(s, "two");
    let mut c = cu.online(s, "c");
    let mut x1 = xu.online(s, "x1");
    let mut x2 = xu.online(s, "x2");
    let mut y = yu.online(s, "y");
    subscribe_to(&mut c, &mut a1);
    drain_all(&mut [&mut a1, &mut a2, &mut c, &mut x1, &mut x2, &mut y]);
    let a1_full = a1.full();

    // To one full JID: that resource only, no broadcast.
    a1.send(&format!(
        "<presence to='{}'><status>psst</status></presence>",
        x1.full()
    ));
    let (p, _) = x1.recv_until("directed presence", |e| {
        is_presence(e, None, Some(&a1_full))
    });
    assert_eq!(status_of(&p).as_deref(), Some("psst"));
    a1.sync();
    for (name, cl) in [
        ("x2", &mut x2),
        ("contact", &mut c),
        ("own resource", &mut a2),
    ] {
        let seen = cl.collect_for(QUIET);
        assert_no_presence_from(&seen, &a.jid, name);
    }
    // To a subscriber: delivered, not remembered separately.
    a1.send(&format!(
        "<presence to='{}'><status>hi fan</status></presence>",
        c.full()
    ));
    c.recv_until("directed presence", |e| {
        status_of(e).as_deref() == Some("hi fan")
    });
    // To y's bare JID, then withdrawn by hand.
    a1.send(&format!("<presence to='{}'/>", y.bare()));
    y.recv_until("directed presence", |e| {
        is_presence(e, None, Some(&a1_full))
    });
    a1.send(&format!("<presence to='{}' type='unavailable'/>", y.bare()));
    y.recv_until("directed unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&a1_full))
    });

    a1.send("<presence type='unavailable'/>");
    x1.recv_until("withdrawal", |e| {
        is_presence(e, Some("unavailable"), Some(&a1_full))
    });
    c.recv_until("broadcast unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&a1_full))
    });
    a1.sync();
    let seen = c.collect_for(QUIET);
    let again: Vec<&Element> = seen
        .iter()
        .filter(|e| is_presence(e, Some("unavailable"), Some(&a1_full)))
        .collect();
    assert!(
        again.is_empty(),
        "the subscriber got unavailable twice: {again:?}"
    );
    for (name, cl) in [("y (already withdrawn)", &mut y), ("x2", &mut x2)] {
        let seen = cl.collect_for(Duration::from_millis(50));
        assert_no_presence_from(&seen, &a.jid, name);
    }
}

/// IM-PRES-10/11 and edge case 17: a resource that never sent initial presence may still send
/// directed presence (e.g. to join a chat room); when its connection is lost the addressee
/// must learn that it is gone (RFC 3921 §5.1.4 case 3; RFC 6121 §4.6.1 keeps the list per
/// session "for a given resource" and clears it when the user goes offline).
#[test]
fn im_pres_11_directed_presence_of_a_never_available_resource_is_withdrawn_on_disconnect() {
    let s = Server::shared();
    let (a, xu) = (user(s, "lurker", 0), user(s, "room", 1));
    let mut x = xu.online(s, "x");
    let mut a1 = a.login(s, "quiet");
    let a1_full = a1.full();
    a1.send(&format!(
        "<presence to='{}'><status>only to you</status></presence>",
        x.full()
    ));
    x.recv_until("directed presence", |e| {
        is_presence(e, None, Some(&a1_full))
    });
    a1.drop_tcp();
    let (u, _) = x.recv_until("unavailable after the connection was lost", |e| {
        is_presence(e, Some("unavailable"), Some(&a1_full))
    });
    assert_eq!(u.attr("from"), Some(a1_full.as_str()));
}

/// The same resource never sent initial presence either, sent directed presence, and then
/// broadcasts unavailable presence: the addressee must get it (RFC 3921 §5.1.4 case 3: such
/// targets are treated like any other directed-presence target).
#[test]
fn im_pres_11_directed_presence_of_a_never_available_resource_is_withdrawn_by_unavailable() {
    let s = Server::shared();
    let (a, xu) = (user(s, "shy", 0), user(s, "lobby", 1));
    let mut x = xu.online(s, "x");
    let mut a1 = a.login(s, "quiet");
    let a1_full = a1.full();
    a1.send(&format!("<presence to='{}'/>", x.full()));
    x.recv_until("directed presence", |e| {
        is_presence(e, None, Some(&a1_full))
    });
    a1.send("<presence type='unavailable'><status>leaving</status></presence>");
    let (u, _) = x.recv_until("unavailable broadcast", |e| {
        is_presence(e, Some("unavailable"), Some(&a1_full))
    });
    assert_eq!(status_of(&u).as_deref(), Some("leaving"));
}

/// IM-PRES-12: presence with an unknown type or a priority that is not an integer from -128
/// to 127 is refused with `bad-request` (carrying the stanza's id, RFC 6120 §8.1.3) and not
/// broadcast; the limits themselves are accepted.
#[test]
fn im_pres_12_bad_type_or_priority_is_bad_request() {
    let s = Server::shared();
    let (a, cu) = (user(s, "sloppy", 0), user(s, "reader", 1));
    let mut a1 = a.online(s, "one");
    let mut c = cu.online(s, "c");
    subscribe_to(&mut c, &mut a1);
    drain_all(&mut [&mut a1, &mut c]);
    let mut failures = Vec::new();
    for (id, stanza) in [
        ("t1", "<presence id='t1' type='invisible'/>"),
        ("t2", "<presence id='t2' type='Unavailable'/>"),
        (
            "p1",
            "<presence id='p1'><priority>high</priority></presence>",
        ),
        (
            "p2",
            "<presence id='p2'><priority>128</priority></presence>",
        ),
        (
            "p3",
            "<presence id='p3'><priority>-129</priority></presence>",
        ),
        (
            "p4",
            "<presence id='p4'><priority>1.5</priority></presence>",
        ),
        ("p5", "<presence id='p5'><priority></priority></presence>"),
    ] {
        a1.send(stanza);
        let mut seen = settle(&mut a1);
        let errors: Vec<Element> = seen
            .iter()
            .filter(|e| is_presence(e, Some("error"), None))
            .cloned()
            .collect();
        seen.retain(|e| e.name == "presence" && e.attr("type") != Some("error"));
        match errors.as_slice() {
            [e] => {
                let cond = stanza_error(e).map(|x| (x.0, x.1));
                if cond != Some(("bad-request".into(), "modify".into())) {
                    failures.push(format!("{stanza}: condition {cond:?} in {e:?}"));
                }
                if e.attr("id") != Some(id) {
                    failures.push(format!("{stanza}: error without the stanza's id: {e:?}"));
                }
            }
            other => failures.push(format!("{stanza}: expected one error, got {other:?}")),
        }
        if !seen.is_empty() {
            failures.push(format!("{stanza}: also echoed as presence: {seen:?}"));
        }
    }
    // Nothing of it reached the contact.
    let leaked = presence_from(&c.collect_for(Duration::from_millis(50)), &a.jid)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    if !leaked.is_empty() {
        failures.push(format!("broadcast to the contact: {leaked:?}"));
    }
    // The limits are fine.
    let me = a1.full();
    for prio in ["127", "-128", " 7 "] {
        a1.send(&format!("<presence><priority>{prio}</priority></presence>"));
        let (_, skipped) = a1.recv_until("echo", |e| is_presence(e, None, Some(&me)));
        let errors: Vec<&Element> = skipped
            .iter()
            .filter(|e| is_presence(e, Some("error"), None))
            .collect();
        if !errors.is_empty() {
            failures.push(format!("priority {prio:?} refused: {errors:?}"));
        }
    }
    assert!(failures.is_empty(), "IM-PRES-12:\n{}", failures.join("\n"));
}

/// IM-PRES-13: a presence without `<priority/>` counts as priority 0: a chat message to the
/// bare JID goes to it and to an explicit priority 0, not to a negative one, and not to it
/// once another resource has priority 1.
#[test]
fn im_pres_13_missing_priority_is_zero() {
    let s = Server::shared();
    let (a, xu) = (user(s, "prio", 0), user(s, "sender", 1));
    let mut none = a.available(s, "none", "<presence/>");
    let mut zero = a.available(s, "zero", "<presence><priority>0</priority></presence>");
    let mut neg = a.available(s, "neg", "<presence><priority>-1</priority></presence>");
    let mut x = xu.online(s, "x");
    drain_all(&mut [&mut none, &mut zero, &mut neg]);
    let send = |x: &mut Client, id: &str| {
        x.send(&format!(
            "<message to='{}' type='chat' id='{id}'><body>hi</body></message>",
            a.jid
        ));
    };
    let is = |id: &'static str| move |e: &Element| e.name == "message" && e.attr("id") == Some(id);
    send(&mut x, "m1");
    none.recv_until("m1 at the resource without priority", is("m1"));
    zero.recv_until("m1 at priority 0", is("m1"));
    x.sync();
    let seen = neg.collect_for(QUIET);
    assert!(!seen.iter().any(is("m1")), "negative priority got m1");
    // Priority 1 elsewhere now beats the missing priority.
    zero.send("<presence><priority>1</priority></presence>");
    let zero_full = zero.full();
    none.recv_until("zero's update", |e| is_presence(e, None, Some(&zero_full)));
    send(&mut x, "m2");
    zero.recv_until("m2 at priority 1", is("m2"));
    x.sync();
    let seen = none.collect_for(QUIET);
    assert!(
        !seen.iter().any(is("m2")),
        "priority 0 got m2 next to priority 1"
    );
}

/// IM-PRES-14: inbound presence to the bare JID reaches every available resource, whatever its
/// priority (not a connected but unavailable one); to a full JID only that resource.
#[test]
fn im_pres_14_presence_to_bare_and_full_jid() {
    let s = Server::shared();
    let (a, xu) = (user(s, "addressee", 0), user(s, "caller", 1));
    let mut a1 = a.online(s, "one");
    let mut a2 = a.online(s, "two");
    let mut a3 = a.login(s, "three");
    let mut a4 = a.available(s, "four", "<presence><priority>-5</priority></presence>");
    let mut x = xu.online(s, "x");
    drain_all(&mut [&mut a1, &mut a2, &mut a4]);
    let x_full = x.full();
    x.send(&format!(
        "<presence to='{}'><status>to all</status></presence>",
        a.jid
    ));
    // Priority decides message delivery, not presence: the negative one gets it too.
    for (name, c) in [("one", &mut a1), ("two", &mut a2), ("negative", &mut a4)] {
        c.recv_until(&format!("{name}: bare-JID presence"), |e| {
            is_presence(e, None, Some(&x_full)) && status_of(e).as_deref() == Some("to all")
        });
    }
    let seen = a3.collect_for(QUIET);
    assert_no_presence_from(&seen, &xu.jid, "connected but unavailable resource");
    x.send(&format!(
        "<presence to='{}' type='unavailable'><status>to one</status></presence>",
        a1.full()
    ));
    a1.recv_until("full-JID presence", |e| {
        is_presence(e, Some("unavailable"), Some(&x_full))
    });
    x.sync();
    let seen = a2.collect_for(QUIET);
    assert_no_presence_from(&seen, &xu.jid, "the other resource");
}

/// IM-PRES-15: presence (available or unavailable) for an account without available
/// resources, for a missing account, or for a missing full JID is dropped silently: no error
/// to the sender, nothing stored for later.
#[test]
fn im_pres_15_presence_to_unavailable_or_missing_addressees_is_dropped() {
    let s = Server::shared();
    let (a, xu) = (user(s, "absent", 0), user(s, "knocker", 1));
    let mut x = xu.online(s, "x");
    let stale = [
        format!(
            "<presence to='{}'><status>stale 1</status></presence>",
            a.jid
        ),
        format!("<presence to='{}' type='unavailable'/>", a.jid),
        format!(
            "<presence to='{}/ghost'><status>stale 2</status></presence>",
            a.jid
        ),
        "<presence to='no-such-account-at-all@localhost'/>".to_string(),
        "<presence to='no-such-account-at-all@localhost/r' type='unavailable'/>".to_string(),
    ];
    for p in &stale {
        x.send(p);
    }
    let seen = settle(&mut x);
    assert!(seen.is_empty(), "the sender got an answer: {seen:?}");
    // Connected but not available: still nothing.
    let mut a1 = a.login(s, "one");
    x.send(&format!(
        "<presence to='{}'><status>stale 3</status></presence>",
        a.jid
    ));
    x.sync();
    let seen = a1.collect_for(QUIET);
    assert_no_presence_from(&seen, &xu.jid, "connected, unavailable");
    // Available now: nothing was kept for it; a missing resource still gets nothing.
    a1.send("<presence/>");
    let me = a1.full();
    let (_, mut seen) = a1.recv_until("echo", |e| is_presence(e, None, Some(&me)));
    x.send(&format!(
        "<presence to='{}/ghost'><status>stale 4</status></presence>",
        a.jid
    ));
    seen.extend(settle(&mut x));
    seen.extend(a1.collect_for(QUIET));
    assert_no_presence_from(&seen, &xu.jid, "after initial presence");
}

/// IM-PRES-18: presence of type `error` is never broadcast: without `to` it goes nowhere;
/// with a full JID only to that resource.
#[test]
fn im_pres_18_error_presence_is_never_broadcast() {
    let s = Server::shared();
    let (a, cu, xu) = (
        user(s, "erring", 0),
        user(s, "friend", 1),
        user(s, "peer", 1),
    );
    let mut a1 = a.online(s, "one");
    let mut a2 = a.online(s, "two");
    let mut c = cu.online(s, "c");
    let mut x1 = xu.online(s, "x1");
    let mut x2 = xu.online(s, "x2");
    subscribe_to(&mut c, &mut a1);
    drain_all(&mut [&mut a1, &mut a2, &mut c, &mut x1, &mut x2]);
    let err = "<error type='cancel'><service-unavailable \
               xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
    a1.send(&format!("<presence type='error'>{err}</presence>"));
    let seen = settle(&mut a1);
    assert!(seen.is_empty(), "the sender got something back: {seen:?}");
    for (name, cl) in [("contact", &mut c), ("own resource", &mut a2)] {
        let seen = cl.collect_for(Duration::from_millis(50));
        assert_no_presence_from(&seen, &a.jid, name);
    }
    let a1_full = a1.full();
    a1.send(&format!(
        "<presence type='error' to='{}'>{err}</presence>",
        x1.full()
    ));
    let (e, _) = x1.recv_until("error presence", |e| {
        is_presence(e, Some("error"), Some(&a1_full))
    });
    assert_eq!(
        stanza_error(&e).map(|x| x.0).as_deref(),
        Some("service-unavailable")
    );
    a1.sync();
    for (name, cl) in [
        ("x2", &mut x2),
        ("contact", &mut c),
        ("own resource", &mut a2),
    ] {
        let seen = cl.collect_for(Duration::from_millis(100));
        assert_no_presence_from(&seen, &a.jid, name);
    }
}

/// Issue 8 (RFC 6121 §4.3): a probe that a client sends to a contact it is subscribed to is
/// processed on its behalf and answered, to the probing resource, with the contact's current
/// presence (it used to be silently ignored); a probe to a contact it is not subscribed to is
/// still ignored (IM-PRES-16).
#[test]
fn client_probe_to_subscribed_contact_is_answered_with_contacts_presence() {
    let s = Server::shared();
    let (a, b, c) = (user(s, "cprA", 0), user(s, "cprB", 1), user(s, "cprC", 0));
    let mut a1 = a.online(s, "one");
    let mut b1 = b.available(s, "b1", "<presence><status>here</status></presence>");
    let _c1 = c.online(s, "c1");
    subscribe_to(&mut a1, &mut b1);
    drain_all(&mut [&mut a1, &mut b1]);
    a1.send(&format!("<presence to='{}' type='probe'/>", b.jid));
    let b1_full = b1.full();
    let (p, _) = a1.recv_until("b's presence for the probe", |e| {
        is_presence(e, None, Some(&b1_full))
    });
    assert_eq!(status_of(&p).as_deref(), Some("here"));
    // Not subscribed to c: nothing comes back.
    a1.send(&format!("<presence to='{}' type='probe'/>", c.jid));
    let seen = settle(&mut a1);
    assert_no_presence_from(&seen, &c.jid, "probe to an unsubscribed contact");
}
