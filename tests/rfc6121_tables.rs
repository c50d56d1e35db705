//! RFC 6121 Appendix A (checklist IM-SUBTAB-01/02): the subscription state tables, cell by
//! cell, end to end. Each cell uses two fresh accounts, the user A homed on shard 0 and the
//! contact B on shard 1, both online with their rosters requested. They are driven into the
//! row's state with real subscription stanzas only, then A (Table A) or B (Table B) sends the
//! cell's stanza and the test checks what reaches the other side and A's roster item.
//!
//! Table A's "R" (routed) is only visible on B's client where B's server delivers the stanza
//! (Table B "D"); where B's server drops it or answers for B, B must see nothing. The pure
//! state functions are unit-tested cell by cell in `src/modules/im/subscription.rs`.

mod common;

use common::*;
use std::time::Duration;
use xmppd::xml::Element;

/// How long "nothing arrives" is watched after a synchronising ping.
const QUIET: Duration = Duration::from_millis(350);
/// How long stale stanzas are drained between steps.
const DRAIN: Duration = Duration::from_millis(150);

/// The nine states of A regarding B (RFC 6121 Appendix A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    N,
    NPo,
    NPi,
    NPoPi,
    To,
    ToPi,
    From,
    FromPo,
    Both,
}

/// A subscription stanza type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Subscribe,
    Unsubscribe,
    Subscribed,
    Unsubscribed,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Subscribe,
        Kind::Unsubscribe,
        Kind::Subscribed,
        Kind::Unsubscribed,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Unsubscribe => "unsubscribe",
            Kind::Subscribed => "subscribed",
            Kind::Unsubscribed => "unsubscribed",
        }
    }
}

/// A roster item as the test expects it: None = no item at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    subscription: &'static str,
    ask: bool,
    approved: bool,
}

const fn item(subscription: &'static str, ask: bool) -> Option<Item> {
    Some(Item {
        subscription,
        ask,
        approved: false,
    })
}

const fn pre_approved(subscription: &'static str, ask: bool) -> Option<Item> {
    Some(Item {
        subscription,
        ask,
        approved: true,
    })
}

/// What the other side's client sees of the stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Routed and delivered (R + D).
    Delivered,
    /// Routed but dropped or auto-answered by the receiving server (R + –/AR): nothing arrives.
    RoutedNotDelivered,
    /// Not routed (–): nothing arrives.
    NotRouted,
}

/// One cell: what B's client sees, A's item afterwards, and whether A got a push.
struct Cell {
    seen: Seen,
    item: Option<Item>,
    push: bool,
}

fn cell(seen: Seen, item: Option<Item>, push: bool) -> Cell {
    Cell { seen, item, push }
}

/// Two online users with requested rosters: A (shard 0) and B (shard 1).
struct Pair {
    a: Client,
    b: Client,
    ja: String,
    jb: String,
    /// A's localpart and password.
    a_login: (String, String),
}

impl Pair {
    fn new(s: &Server) -> Pair {
        let (u1, p1) = s.new_user_on_shard("tabA", 0, 2);
        let (u2, p2) = s.new_user_on_shard("tabB", 1, 2);
        let mut a = Client::online(s, &u1, &p1, Some("balcony"));
        let mut b = Client::online(s, &u2, &p2, Some("garden"));
        for c in [&mut a, &mut b] {
            let (items, _) = c.roster_items();
            assert!(items.is_empty());
        }
        let (ja, jb) = (a.bare(), b.bare());
        Pair {
            a,
            b,
            ja,
            jb,
            a_login: (u1, p1),
        }
    }

    /// A fresh pair in `state` (A's view), settled and drained.
    fn in_state(s: &Server, state: State) -> Pair {
        let mut p = Pair::new(s);
        match state {
            State::N => {}
            State::NPo => p.a_subscribes(),
            State::NPi => p.b_subscribes(),
            State::NPoPi => {
                p.a_subscribes();
                p.b_subscribes();
            }
            State::To => {
                p.a_subscribes();
                p.b_approves();
            }
            State::ToPi => {
                p.a_subscribes();
                p.b_approves();
                p.b_subscribes();
            }
            State::From => {
                p.b_subscribes();
                p.a_approves();
            }
            State::FromPo => {
                p.b_subscribes();
                p.a_approves();
                p.a_subscribes();
            }
            State::Both => {
                p.a_subscribes();
                p.b_approves();
                p.b_subscribes();
                p.a_approves();
            }
        }
        p.a.drain(DRAIN);
        p.b.drain(DRAIN);
        // The driving reached the state: A's item is what the state says.
        let expected = match state {
            State::N | State::NPi => None,
            State::NPo | State::NPoPi => item("none", true),
            State::To | State::ToPi => item("to", false),
            State::From => item("from", false),
            State::FromPo => item("from", true),
            State::Both => item("both", false),
        };
        let got = p.a_item();
        assert_eq!(got, expected, "A's item after driving into {state:?}");
        p
    }

    /// A asks for B's presence; B does not answer. Waits for A's push (ask) and B's request.
    fn a_subscribes(&mut self) {
        let (ja, jb) = (self.ja.clone(), self.jb.clone());
        self.a
            .send(&format!("<presence to='{jb}' type='subscribe'/>"));
        self.a.recv_until("A's push with ask", |e| {
            is_push_for(e, &jb) && roster_push_item(e).unwrap().attr("ask") == Some("subscribe")
        });
        self.b.recv_until("B gets A's subscribe", |e| {
            is_presence(e, Some("subscribe"), Some(&ja))
        });
    }

    /// B asks for A's presence; A does not answer (no item appears on A's side).
    fn b_subscribes(&mut self) {
        let (ja, jb) = (self.ja.clone(), self.jb.clone());
        self.b
            .send(&format!("<presence to='{ja}' type='subscribe'/>"));
        self.b.recv_until("B's push with ask", |e| {
            is_push_for(e, &ja) && roster_push_item(e).unwrap().attr("ask") == Some("subscribe")
        });
        self.a.recv_until("A gets B's subscribe", |e| {
            is_presence(e, Some("subscribe"), Some(&jb))
        });
    }

    /// A approves B's pending request. Waits for both pushes, B's `subscribed` and A's presence
    /// at B.
    fn a_approves(&mut self) {
        let (ja, jb) = (self.ja.clone(), self.jb.clone());
        self.a
            .send(&format!("<presence to='{jb}' type='subscribed'/>"));
        self.a.recv_until("A's push (from)", |e| {
            is_push_for(e, &jb)
                && matches!(
                    roster_push_item(e).unwrap().attr("subscription"),
                    Some("from" | "both")
                )
        });
        let a_full = self.a.full();
        self.b.recv_all(&[
            ("B's push (to)", &|e: &Element| {
                is_push_for(e, &ja)
                    && matches!(
                        roster_push_item(e).unwrap().attr("subscription"),
                        Some("to" | "both")
                    )
                    && roster_push_item(e).unwrap().attr("ask").is_none()
            }),
            ("subscribed", &|e: &Element| {
                is_presence(e, Some("subscribed"), Some(&ja))
            }),
            ("A's presence", &|e: &Element| {
                is_presence(e, None, Some(&a_full))
            }),
        ]);
    }

    /// B approves A's pending request.
    fn b_approves(&mut self) {
        let (ja, jb) = (self.ja.clone(), self.jb.clone());
        self.b
            .send(&format!("<presence to='{ja}' type='subscribed'/>"));
        self.b.recv_until("B's push (from)", |e| {
            is_push_for(e, &ja)
                && matches!(
                    roster_push_item(e).unwrap().attr("subscription"),
                    Some("from" | "both")
                )
        });
        let b_full = self.b.full();
        self.a.recv_all(&[
            ("A's push (to)", &|e: &Element| {
                is_push_for(e, &jb)
                    && matches!(
                        roster_push_item(e).unwrap().attr("subscription"),
                        Some("to" | "both")
                    )
                    && roster_push_item(e).unwrap().attr("ask").is_none()
            }),
            ("subscribed", &|e: &Element| {
                is_presence(e, Some("subscribed"), Some(&jb))
            }),
            ("B's presence", &|e: &Element| {
                is_presence(e, None, Some(&b_full))
            }),
        ]);
    }

    /// A's item for B in a fresh roster get.
    fn a_item(&mut self) -> Option<Item> {
        let jb = self.jb.clone();
        let (items, _) = self.a.roster_items();
        item_in(&items, &jb)
    }
}

fn item_of(e: &Element) -> Item {
    Item {
        subscription: match e.attr("subscription") {
            Some("none") | None => "none",
            Some("to") => "to",
            Some("from") => "from",
            Some("both") => "both",
            Some(other) => panic!("unexpected subscription {other:?} in {e:?}"),
        },
        ask: match e.attr("ask") {
            None => false,
            Some("subscribe") => true,
            Some(other) => panic!("unexpected ask {other:?} in {e:?}"),
        },
        approved: match e.attr("approved") {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => panic!("unexpected approved {other:?} in {e:?}"),
        },
    }
}

fn item_in(items: &[Element], jid: &str) -> Option<Item> {
    let mine: Vec<&Element> = items
        .iter()
        .filter(|i| i.attr("jid") == Some(jid))
        .collect();
    assert!(mine.len() <= 1, "two items for {jid}: {items:?}");
    mine.first().map(|e| item_of(e))
}

fn is_subscription_presence(e: &Element) -> bool {
    e.name == "presence"
        && matches!(
            e.attr("type"),
            Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")
        )
}

/// A test on a received element.
type Pred<'a> = Box<dyn Fn(&Element) -> bool + 'a>;

/// Run one Table A cell: A, in `state`, sends `kind` to B.
fn table_a(state: State, kind: Kind, want: Cell) {
    let s = Server::shared();
    let mut p = Pair::in_state(s, state);
    let (ja, jb) = (p.ja.clone(), p.jb.clone());
    let ctx = format!("Table A, state {state:?}, A sends {}", kind.name());
    p.a.send(&format!("<presence to='{jb}' type='{}'/>", kind.name()));
    // Everything A receives from now on, for the push and "A gets no answer" checks.
    let mut seen_by_a = Vec::new();
    match want.seen {
        Seen::Delivered => {
            let a_full = p.a.full();
            let a_had_from = matches!(state, State::From | State::FromPo | State::Both);
            let is_stanza = |e: &Element| is_presence(e, Some(kind.name()), Some(&ja));
            // What else B sees, in whichever order it arrives.
            let side: Option<(&str, Pred)> = match kind {
                // IM-SUB-09: an approval comes with A's current presence.
                Kind::Subscribed => Some((
                    "A's presence",
                    Box::new(|e: &Element| is_presence(e, None, Some(&a_full))),
                )),
                // IM-SUB-14: cancelling B's subscription withdraws A's presence.
                Kind::Unsubscribed if a_had_from => Some((
                    "A's unavailable",
                    Box::new(|e: &Element| is_presence(e, Some("unavailable"), Some(&a_full))),
                )),
                _ => None,
            };
            let got = match &side {
                Some((what, pred)) => {
                    let (got, _) = p.b.recv_all(&[(ctx.as_str(), &is_stanza), (what, &**pred)]);
                    got.into_iter().next().unwrap()
                }
                None => p.b.recv_until(&ctx, is_stanza).0,
            };
            // IM-SUB-01: from A's bare JID to B's bare JID.
            assert_eq!(got.attr("to"), Some(jb.as_str()), "{ctx}: {got:?}");
            // IM-SUB-13: B's server withdraws B's presence from A.
            if kind == Kind::Unsubscribe && matches!(state, State::To | State::ToPi | State::Both) {
                let b_full = p.b.full();
                let (_, skipped) = p.a.recv_until(&format!("{ctx}: B's unavailable"), |e| {
                    is_presence(e, Some("unavailable"), Some(&b_full))
                });
                seen_by_a.extend(skipped);
            }
        }
        Seen::RoutedNotDelivered | Seen::NotRouted => {
            seen_by_a.extend(p.a.sync());
            if let Some(e) = p.b.try_recv(QUIET) {
                panic!("{ctx}: expected B to receive nothing, got {e:?}");
            }
        }
    }
    seen_by_a.extend(p.a.sync());
    seen_by_a.extend(p.a.collect_for(Duration::from_millis(200)));
    // A's roster push: exactly one on a change, none otherwise.
    let pushes: Vec<&Element> = seen_by_a.iter().filter(|e| is_push_for(e, &jb)).collect();
    if want.push {
        let push = match pushes.as_slice() {
            [] => {
                let (push, _) =
                    p.a.recv_until(&format!("{ctx}: A's push"), |e| is_push_for(e, &jb));
                push
            }
            [one] => (*one).clone(),
            more => panic!("{ctx}: more than one push: {more:?}"),
        };
        assert_eq!(
            Some(item_of(roster_push_item(&push).unwrap())),
            want.item,
            "{ctx}: pushed item"
        );
    } else {
        assert!(
            pushes.is_empty(),
            "{ctx}: unexpected roster push to A: {pushes:?}"
        );
    }
    // B never answers here, and whatever B's server answered for B is not for A's client
    // (e.g. the auto-reply `subscribed` in From/Both, dropped by A's server: Table B).
    let answers: Vec<&Element> = seen_by_a
        .iter()
        .filter(|e| is_subscription_presence(e))
        .collect();
    assert!(
        answers.is_empty(),
        "{ctx}: A got subscription presence: {answers:?}"
    );
    // B got it once only.
    let again: Vec<Element> =
        p.b.collect_for(Duration::from_millis(100))
            .into_iter()
            .filter(|e| is_presence(e, Some(kind.name()), Some(&ja)))
            .collect();
    assert!(again.is_empty(), "{ctx}: B got it twice: {again:?}");
    // A's item in a fresh roster get.
    assert_eq!(p.a_item(), want.item, "{ctx}: A's roster item afterwards");
}

/// One row: the four stanza types in the order subscribe, unsubscribe, subscribed,
/// unsubscribed.
fn row_a(state: State, cells: [Cell; 4]) {
    for (kind, want) in Kind::ALL.into_iter().zip(cells) {
        table_a(state, kind, want);
    }
}

use Seen::{Delivered as D, NotRouted as X, RoutedNotDelivered as R};

#[test]
fn im_subtab_01_none() {
    row_a(
        State::N,
        [
            cell(D, item("none", true), true),
            // B (state None) drops it.
            cell(R, None, false),
            // Pre-approval (IM-SUB-15): an item with approved='true', nothing routed.
            cell(X, pre_approved("none", false), true),
            cell(X, None, false),
        ],
    );
}

#[test]
fn im_subtab_01_none_pending_out() {
    row_a(
        State::NPo,
        [
            // B already has it pending: not delivered again.
            cell(R, item("none", true), false),
            cell(D, item("none", false), true),
            // RFC 6121 §3.4.2 rule 3: "None + Pending Out" is pre-approved like None and To
            // (the checklist table says only "no change").
            cell(X, pre_approved("none", true), true),
            cell(X, item("none", true), false),
        ],
    );
}

#[test]
fn im_subtab_01_none_pending_in() {
    row_a(
        State::NPi,
        [
            cell(D, item("none", true), true),
            // B (None + Pending Out) drops an unsubscribe; A has no item and gets none.
            cell(R, None, false),
            cell(D, item("from", false), true),
            // Denial: the pending request goes; no item ever existed, so no push.
            cell(D, None, false),
        ],
    );
}

#[test]
fn im_subtab_01_none_pending_out_in() {
    row_a(
        State::NPoPi,
        [
            cell(R, item("none", true), false),
            cell(D, item("none", false), true),
            cell(D, item("from", true), true),
            // Only the invisible pending-in changes: no push.
            cell(D, item("none", true), false),
        ],
    );
}

#[test]
fn im_subtab_01_to() {
    row_a(
        State::To,
        [
            // B (From) answers `subscribed` for B and does not deliver.
            cell(R, item("to", false), false),
            cell(D, item("none", false), true),
            cell(X, pre_approved("to", false), true),
            cell(X, item("to", false), false),
        ],
    );
}

#[test]
fn im_subtab_01_to_pending_in() {
    row_a(
        State::ToPi,
        [
            cell(R, item("to", false), false),
            cell(D, item("none", false), true),
            cell(D, item("both", false), true),
            cell(D, item("to", false), false),
        ],
    );
}

#[test]
fn im_subtab_01_from() {
    row_a(
        State::From,
        [
            cell(D, item("from", true), true),
            // B (To) drops it.
            cell(R, item("from", false), false),
            cell(X, item("from", false), false),
            cell(D, item("none", false), true),
        ],
    );
}

#[test]
fn im_subtab_01_from_pending_out() {
    row_a(
        State::FromPo,
        [
            // B (To + Pending In) already has it pending.
            cell(R, item("from", true), false),
            cell(D, item("from", false), true),
            cell(X, item("from", true), false),
            cell(D, item("none", true), true),
        ],
    );
}

#[test]
fn im_subtab_01_both() {
    row_a(
        State::Both,
        [
            // B (Both) answers for B.
            cell(R, item("both", false), false),
            cell(D, item("from", false), true),
            cell(X, item("both", false), false),
            cell(D, item("to", false), true),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Table B: B sends, A's server processes the inbound stanza. Only cells that B's server routes
// from a consistent state are reachable.

/// B sends `kind` to A's bare JID.
fn b_sends(p: &mut Pair, kind: Kind) {
    let ja = p.ja.clone();
    p.b.send(&format!("<presence to='{ja}' type='{}'/>", kind.name()));
}

/// A's client receives nothing at all for a while (after B's server dispatched the stanza).
fn a_gets_nothing(p: &mut Pair, ctx: &str) {
    p.b.sync();
    if let Some(e) = p.a.try_recv(QUIET) {
        panic!("{ctx}: expected A to receive nothing, got {e:?}");
    }
}

#[test]
fn im_subtab_02_none_unsubscribe() {
    let mut p = Pair::in_state(Server::shared(), State::N);
    b_sends(&mut p, Kind::Unsubscribe);
    a_gets_nothing(&mut p, "Table B, None, unsubscribe");
    assert_eq!(p.a_item(), None);
}

#[test]
fn im_subtab_02_none_pending_out_unsubscribed() {
    let mut p = Pair::in_state(Server::shared(), State::NPo);
    let jb = p.jb.clone();
    b_sends(&mut p, Kind::Unsubscribed);
    p.a.recv_all(&[
        ("unsubscribed", &|e: &Element| {
            is_presence(e, Some("unsubscribed"), Some(&jb))
        }),
        ("push (none)", &|e: &Element| {
            is_push_for(e, &jb)
                && item_of(roster_push_item(e).unwrap()) == item("none", false).unwrap()
        }),
    ]);
    assert_eq!(p.a_item(), item("none", false));
}

#[test]
fn im_subtab_02_none_pending_in_subscribe() {
    let mut p = Pair::in_state(Server::shared(), State::NPi);
    // Already pending: not delivered again, and nothing appears in A's roster.
    b_sends(&mut p, Kind::Subscribe);
    a_gets_nothing(&mut p, "Table B, None + Pending In, subscribe");
    assert_eq!(p.a_item(), None);
}

#[test]
fn im_subtab_02_none_pending_in_unsubscribe() {
    let s = Server::shared();
    let mut p = Pair::in_state(s, State::NPi);
    let jb = p.jb.clone();
    // B withdraws its request: delivered, and A's pending request is gone.
    b_sends(&mut p, Kind::Unsubscribe);
    p.a.recv_until("unsubscribe", |e| {
        is_presence(e, Some("unsubscribe"), Some(&jb))
    });
    assert_eq!(p.a_item(), None);
    // IM-SUB-07: it is no longer redelivered at login.
    let (user, pw) = p.a_login.clone();
    let mut again = Client::online(s, &user, &pw, Some("again"));
    let stale: Vec<Element> = again
        .collect_for(QUIET)
        .into_iter()
        .filter(is_subscription_presence)
        .collect();
    assert!(stale.is_empty(), "withdrawn request redelivered: {stale:?}");
}

#[test]
fn im_subtab_02_none_pending_out_in_subscribed() {
    let mut p = Pair::in_state(Server::shared(), State::NPoPi);
    let jb = p.jb.clone();
    b_sends(&mut p, Kind::Subscribed);
    p.a.recv_all(&[
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&jb))
        }),
        ("push (to)", &|e: &Element| {
            is_push_for(e, &jb)
                && item_of(roster_push_item(e).unwrap()) == item("to", false).unwrap()
        }),
    ]);
    // To + Pending In: the request is still there, A can still answer it.
    assert_eq!(p.a_item(), item("to", false));
}

#[test]
fn im_subtab_02_to_unsubscribed() {
    let mut p = Pair::in_state(Server::shared(), State::To);
    let jb = p.jb.clone();
    let b_full = p.b.full();
    b_sends(&mut p, Kind::Unsubscribed);
    p.a.recv_all(&[
        ("unsubscribed", &|e: &Element| {
            is_presence(e, Some("unsubscribed"), Some(&jb))
        }),
        ("push (none)", &|e: &Element| {
            is_push_for(e, &jb)
                && item_of(roster_push_item(e).unwrap()) == item("none", false).unwrap()
        }),
        // IM-SUB-14: B's server withdraws B's presence.
        ("B unavailable", &|e: &Element| {
            is_presence(e, Some("unavailable"), Some(&b_full))
        }),
    ]);
    assert_eq!(p.a_item(), item("none", false));
}

#[test]
fn im_subtab_02_to_pending_in_subscribe() {
    let mut p = Pair::in_state(Server::shared(), State::ToPi);
    b_sends(&mut p, Kind::Subscribe);
    a_gets_nothing(&mut p, "Table B, To + Pending In, subscribe");
    assert_eq!(p.a_item(), item("to", false));
}

#[test]
fn im_subtab_02_from_subscribe() {
    let mut p = Pair::in_state(Server::shared(), State::From);
    // Already approved: A's server answers `subscribed` for A (B's server drops it: B has no
    // pending request) and does not deliver the request.
    b_sends(&mut p, Kind::Subscribe);
    a_gets_nothing(&mut p, "Table B, From, subscribe");
    assert_eq!(p.a_item(), item("from", false));
}

#[test]
fn im_subtab_02_from_unsubscribe() {
    let mut p = Pair::in_state(Server::shared(), State::From);
    let (ja, jb) = (p.ja.clone(), p.jb.clone());
    let a_full = p.a.full();
    b_sends(&mut p, Kind::Unsubscribe);
    p.a.recv_all(&[
        ("unsubscribe", &|e: &Element| {
            is_presence(e, Some("unsubscribe"), Some(&jb))
        }),
        ("push (none)", &|e: &Element| {
            is_push_for(e, &jb)
                && item_of(roster_push_item(e).unwrap()) == item("none", false).unwrap()
        }),
    ]);
    // IM-SUB-13: B no longer sees A: A's server sends A's unavailable presence to B.
    p.b.recv_until("A unavailable", |e| {
        is_presence(e, Some("unavailable"), Some(&a_full))
    });
    assert_eq!(p.a_item(), item("none", false));
    // A's later broadcasts no longer reach B.
    p.a.send("<presence><status>after</status></presence>");
    p.a.sync();
    let leaked: Vec<Element> =
        p.b.collect_for(QUIET)
            .into_iter()
            .filter(|e| e.name == "presence" && e.attr("from").is_some_and(|f| f.starts_with(&ja)))
            .collect();
    assert!(leaked.is_empty(), "presence after unsubscribe: {leaked:?}");
}

#[test]
fn im_subtab_02_from_pending_out_subscribed() {
    let mut p = Pair::in_state(Server::shared(), State::FromPo);
    let jb = p.jb.clone();
    b_sends(&mut p, Kind::Subscribed);
    p.a.recv_all(&[
        ("subscribed", &|e: &Element| {
            is_presence(e, Some("subscribed"), Some(&jb))
        }),
        ("push (both)", &|e: &Element| {
            is_push_for(e, &jb)
                && item_of(roster_push_item(e).unwrap()) == item("both", false).unwrap()
        }),
    ]);
    assert_eq!(p.a_item(), item("both", false));
}

#[test]
fn im_subtab_02_both_subscribe() {
    let mut p = Pair::in_state(Server::shared(), State::Both);
    b_sends(&mut p, Kind::Subscribe);
    a_gets_nothing(&mut p, "Table B, Both, subscribe");
    assert_eq!(p.a_item(), item("both", false));
}

#[test]
fn im_subtab_02_both_unsubscribed() {
    let mut p = Pair::in_state(Server::shared(), State::Both);
    let jb = p.jb.clone();
    let b_full = p.b.full();
    b_sends(&mut p, Kind::Unsubscribed);
    p.a.recv_all(&[
        ("unsubscribed", &|e: &Element| {
            is_presence(e, Some("unsubscribed"), Some(&jb))
        }),
        ("push (from)", &|e: &Element| {
            is_push_for(e, &jb)
                && item_of(roster_push_item(e).unwrap()) == item("from", false).unwrap()
        }),
        ("B unavailable", &|e: &Element| {
            is_presence(e, Some("unavailable"), Some(&b_full))
        }),
    ]);
    assert_eq!(p.a_item(), item("from", false));
}

/// N + Pending Out, inbound `subscribed`: delivered, A moves to To with a push (IM-SUB-11),
/// and B's current presence follows the approval (IM-SUB-09: B's server routes `subscribed`
/// and *then* B's presence; RFC 6120 §10.1: A's server processes them in that order), so A's
/// client never sees B's presence while its roster still says `none` + `ask`.
#[test]
fn im_subtab_02_none_pending_out_subscribed() {
    let mut p = Pair::in_state(Server::shared(), State::NPo);
    let jb = p.jb.clone();
    let b_full = p.b.full();
    b_sends(&mut p, Kind::Subscribed);
    let mut order = Vec::new();
    while order.len() < 3 {
        let e = p.a.recv_el();
        if is_presence(&e, Some("subscribed"), Some(&jb)) {
            order.push("subscribed");
        } else if is_push_for(&e, &jb) {
            assert_eq!(
                item_of(roster_push_item(&e).unwrap()),
                item("to", false).unwrap()
            );
            order.push("push");
        } else if is_presence(&e, None, Some(&b_full)) {
            order.push("presence");
        }
    }
    assert_eq!(p.a_item(), item("to", false));
    assert_eq!(
        order.last(),
        Some(&"presence"),
        "A got B's presence before the approval was processed: {order:?}"
    );
}
