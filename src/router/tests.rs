//! The router's delivery decision as a table, and a whole router on one glommio shard with
//! test modules: chain order, the delivery scope (no re-entrance), services on the host
//! table, the notification chains.

use super::*;
use crate::config::Cli;
use crate::core::events::{
    priority, BeforeWrite, DeliverBare, DeliverFull, SessionBound, SessionEnded,
};
use crate::core::{Identity, RegisterFn, Service, ServiceHost};
use crate::shard::Links;
use clap::Parser;
use std::time::Instant;

/// RFC 6121 §8.5 and RFC 6120 §10.5.3, row by row. `(resource named, resource connected)`:
/// `(false, false)` is a bare JID; `(true, false)` a full JID with no such resource.
#[test]
fn rfc6121_8_5_delivery_table() {
    use Decision::*;
    let shapes = [(false, false), (true, false), (true, true)];
    for it in IqType::ALL {
        let ty = StanzaType::Iq(it);
        let request = matches!(it, IqType::Get | IqType::Set);
        assert_eq!(decide(ty, false, false), ForAccount(it), "IM-IQ-01 {it:?}");
        let missing = if request { Unavailable } else { Drop };
        assert_eq!(decide(ty, true, false), missing, "CORE-STANZA-18 {it:?}");
        assert_eq!(decide(ty, true, true), Resource { bounce: true }, "{it:?}");
    }
    for mt in MessageType::ALL {
        let ty = StanzaType::Message(mt);
        // IM-MSG-01: a connected resource gets every message type.
        assert_eq!(decide(ty, true, true), Resource { bounce: true }, "{mt:?}");
        let (bare, missing) = match mt {
            // IM-MSG-02/07/08
            MessageType::Normal | MessageType::Chat => (Best, Best),
            // IM-MSG-05
            MessageType::Groupchat => (Unavailable, Unavailable),
            // IM-MSG-04, §8.5.3.2.1
            MessageType::Headline => (NonNegative, Drop),
            MessageType::Error => (Drop, Drop),
        };
        assert_eq!(decide(ty, false, false), bare, "bare {mt:?}");
        assert_eq!(decide(ty, true, false), missing, "missing resource {mt:?}");
    }
    for pt in PresenceType::ALL {
        let ty = StanzaType::Presence(pt);
        for (named, connected) in shapes {
            let want = match (pt, named) {
                // IM-PRES-14
                (
                    PresenceType::Available | PresenceType::Unavailable | PresenceType::Error,
                    true,
                ) => {
                    if connected {
                        Resource { bounce: false }
                    } else {
                        Drop
                    }
                }
                // IM-PRES-18, probes are the presence module's.
                (PresenceType::Error, false) | (PresenceType::Probe, _) => Drop,
                // IM-PRES-15, IM-SUB-16: subscriptions to a full JID go to the bare JID.
                _ => Available,
            };
            assert_eq!(
                decide(ty, named, connected),
                want,
                "{pt:?} {named} {connected}"
            );
        }
    }
}

/// What the test modules saw, in order.
type Log = Rc<RefCell<Vec<String>>>;

thread_local! {
    static LOG: Log = Log::default();
    /// State a test module holds borrowed while it routes.
    static STATE: RefCell<u32> = const { RefCell::new(0) };
    /// Stanzas the chaining link has routed.
    static CHAINED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn log(s: impl Into<String>) {
    LOG.with(|l| l.borrow_mut().push(s.into()));
}

fn take_log() -> Vec<String> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

struct Recorder;

impl Service for Recorder {
    fn stanza(&self, ctx: &Ctx, s: &Inbound<'_>) -> Option<Pending> {
        log(format!("service {} from {}", s.route.to, s.route.from));
        // A service answers through the same services as modules; this echoes to the sender.
        ctx.route(
            s.ty,
            s.route.reply(),
            b"<message type='chat'><body>echo</body></message>",
        );
        None
    }
}

/// A test module: a chain link on each event, logging, one of them taking `<message
/// id='take'>`, one relaying `<message id='relay'>` while holding a borrow of its state.
fn test_module(r: &mut Registry, _: &Config) {
    r.module("test");
    r.hook::<DeliverFull>(priority::PROTOCOL, |_, s| {
        log(format!("full-low {}", s.route.to));
        Flow::Continue
    });
    r.hook::<DeliverFull>(priority::POLICY, |ctx, s| {
        log(format!("full-high {}", s.route.to));
        if contains(s.stanza, "id='take'") {
            return Flow::Handled(None);
        }
        if contains(s.stanza, "id='chain'") && CHAINED.with(|c| c.get()) < DRAIN_BUDGET + 10 {
            // Each delivery routes the next: one stanza per drain round, more rounds than
            // one drain may run, so the rest is left to a task.
            CHAINED.with(|c| c.set(c.get() + 1));
            let route = Route::new(s.route.to, JidStr::trusted("b@localhost/r"));
            ctx.route(s.ty, route, b"<message type='chat' id='chain'/>");
        }
        if contains(s.stanza, "id='relay'") {
            // Holding our own borrow while we send: a re-entrant delivery would run this
            // handler again and panic on the second borrow_mut.
            STATE.with(|st| {
                let mut st = st.borrow_mut();
                *st += 1;
                let route = Route::new(s.route.to, JidStr::trusted("b@localhost/r"));
                ctx.route(s.ty, route, b"<message type='chat' id='relayed'/>");
                let _still_mine = &mut *st;
            });
        }
        Flow::Continue
    });
    r.hook::<DeliverBare>(priority::PROTOCOL, |_, s| {
        log(format!("bare {}", s.route.to));
        Flow::Continue
    });
    r.hook::<BeforeWrite>(priority::PROTOCOL, |_, w| {
        log(format!("write {}", w.resource));
        if contains(w.stanza, "id='hold'") {
            return Flow::Handled(None);
        }
        Flow::Continue
    });
    r.hook::<SessionBound>(priority::PROTOCOL, |_, b| {
        log(format!("bound {}", b.jid));
        None
    });
    r.hook::<SessionEnded>(priority::PROTOCOL, |_, res| {
        log(format!("ended {}", res.jid));
        None
    });
    r.service(ServiceHost {
        domain: "svc.localhost".into(),
        parent: "localhost".into(),
        identity: Identity {
            category: "conference",
            kind: "text",
            name: Some("Test service"),
        },
        service: Rc::new(Recorder),
    });
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Run `test` on a one-shard router with `modules`, in a glommio executor.
fn with_router(modules: &'static [RegisterFn], test: impl FnOnce(Rc<Router>) + Send + 'static) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(move || async move {
            let cli = Cli::try_parse_from(["xmppd", "--data-dir", &data]).unwrap();
            let config = Arc::new(Config::resolve(&cli.common, &cli.serve).unwrap());
            let storage =
                xmppd_storage::Storage::open(&config.data_dir, &config.storage_options()).unwrap();
            let (links, _rx) = Links::new(1, 16);
            let outbox = Rc::new(Outbox::new(0, links, 1 << 20));
            let registry = Registry::build(modules, &config);
            let router = Router::new(config, storage, registry, outbox, Default::default());
            test(router.clone());
            // Let queued tasks run (drains scheduled outside scopes).
            glommio::yield_if_needed().await;
            glommio::executor().yield_now().await;
        })
        .unwrap()
        .join()
        .unwrap();
}

fn bind(router: &Rc<Router>, full: &str) -> Rc<ClientHandle> {
    let jid = Jid::parse(full).unwrap();
    let handle = Rc::new(ClientHandle::new(1 << 20, Instant::now()));
    let (bound, _) = router
        .bind(&jid.to_bare(), jid.resource(), handle.clone())
        .unwrap();
    *handle.jid.borrow_mut() = Some(bound);
    handle
}

fn out(h: &ClientHandle) -> String {
    let s = String::from_utf8(h.out().clone()).unwrap();
    h.out().clear();
    s
}

fn chat(router: &Rc<Router>, from: &str, to: &str, id: &str) {
    let stanza = format!("<message type='chat' id='{id}' from='{from}' to='{to}'/>");
    let p = router.route(
        StanzaType::Message(MessageType::Chat),
        Route::new(JidStr::trusted(from), JidStr::trusted(to)),
        stanza.as_bytes(),
    );
    assert!(p.is_none());
}

#[test]
fn chains_run_by_priority_and_a_handled_stanza_goes_no_further() {
    static MODULES: &[RegisterFn] = &[test_module];
    with_router(MODULES, |router| {
        let a = bind(&router, "a@localhost/r");
        assert_eq!(take_log(), vec!["bound a@localhost/r"]);
        chat(&router, "z@localhost/x", "a@localhost/r", "plain");
        assert_eq!(
            take_log(),
            vec![
                "full-high a@localhost/r",
                "full-low a@localhost/r",
                "write a@localhost/r"
            ]
        );
        assert!(out(&a).contains("id='plain'"));
        // Taken by the high-priority link: the low one and delivery never see it.
        chat(&router, "z@localhost/x", "a@localhost/r", "take");
        assert_eq!(take_log(), vec!["full-high a@localhost/r"]);
        assert_eq!(out(&a), "");
        // Held by BeforeWrite: not queued for the client.
        chat(&router, "z@localhost/x", "a@localhost/r", "hold");
        assert_eq!(take_log().last().unwrap(), "write a@localhost/r");
        assert_eq!(out(&a), "");
        // To the bare JID of an account with no available resource: the bare chain, then
        // (no such account, no offline module) service-unavailable back to the sender.
        chat(&router, "z@localhost/x", "a@localhost", "none");
        assert_eq!(
            take_log(),
            vec![
                "bare a@localhost",
                "full-high z@localhost/x",
                "full-low z@localhost/x"
            ]
        );
        assert_eq!(out(&a), "");
        // Available: the bare chain, then the best resource.
        router
            .sessions
            .borrow_mut()
            .account_mut("a@localhost")
            .and_then(|a| a.get_mut("r"))
            .unwrap()
            .priority = Some(0);
        chat(&router, "z@localhost/x", "a@localhost", "bare");
        assert_eq!(take_log(), vec!["bare a@localhost", "write a@localhost/r"]);
        assert!(out(&a).contains("id='bare'"));
        router.session_ended(&Jid::parse("a@localhost/r").unwrap(), &a);
        assert_eq!(take_log(), vec!["ended a@localhost/r"]);
        // Registration order is visible for `check` and the docs.
        let chains = router.registry.chains();
        let full = chains.iter().find(|(e, _)| *e == "deliver_full").unwrap();
        assert_eq!(full.1, vec![("test", 100), ("test", 0)]);
    });
}

#[test]
fn a_handler_routing_while_it_holds_a_borrow_is_not_reentered() {
    static MODULES: &[RegisterFn] = &[test_module];
    with_router(MODULES, |router| {
        let a = bind(&router, "a@localhost/r");
        let b = bind(&router, "b@localhost/r");
        take_log();
        chat(&router, "z@localhost/x", "a@localhost/r", "relay");
        // a's delivery finished (both links, the write) before b's began.
        assert_eq!(
            take_log(),
            vec![
                "full-high a@localhost/r",
                "full-low a@localhost/r",
                "write a@localhost/r",
                "full-high b@localhost/r",
                "full-low b@localhost/r",
                "write b@localhost/r",
            ]
        );
        assert!(out(&a).contains("id='relay'"));
        assert!(out(&b).contains("id='relayed'"));
        assert_eq!(STATE.with(|s| *s.borrow()), 1);
    });
}

#[test]
fn a_service_gets_its_domain_and_entities_and_is_listed_in_disco_items() {
    static MODULES: &[RegisterFn] = &[crate::modules::disco::register, test_module];
    with_router(MODULES, |router| {
        let a = bind(&router, "a@localhost/r");
        take_log();
        chat(&router, "a@localhost/r", "room@svc.localhost/nick", "m1");
        chat(&router, "a@localhost/r", "svc.localhost", "m2");
        let log = take_log();
        assert_eq!(log[0], "service room@svc.localhost/nick from a@localhost/r");
        assert!(log.contains(&"service svc.localhost from a@localhost/r".to_string()));
        // The service's answers came back to the sender.
        assert_eq!(out(&a).matches("echo").count(), 2);
        // Disco items of the parent domain list it (XEP-0030 §4).
        let from = Jid::parse("a@localhost/r").unwrap();
        let to = Jid::parse("localhost").unwrap();
        let iq = b"<iq type='get' id='i1' from='a@localhost/r' to='localhost'>\
            <query xmlns='http://jabber.org/protocol/disco#items'/></iq>";
        let p = router.from_client(FromClient {
            from: &from,
            handle: &a,
            ty: StanzaType::Iq(IqType::Get),
            to: Some(&to),
            id: Some("i1"),
            stamped: iq,
        });
        assert!(p.is_none());
        let reply = out(&a);
        assert!(
            reply.contains("<item jid='svc.localhost' name='Test service'/>"),
            "{reply}"
        );
    });
}

#[test]
fn unknown_domains_bounce_remote_server_not_found() {
    static MODULES: &[RegisterFn] = &[test_module];
    with_router(MODULES, |router| {
        let a = bind(&router, "a@localhost/r");
        chat(&router, "a@localhost/r", "bob@elsewhere.example", "far");
        let reply = out(&a);
        assert!(reply.contains("type='error'"), "{reply}");
        assert!(reply.contains("remote-server-not-found"), "{reply}");
        assert!(reply.contains("id='far'"), "{reply}");
    });
}

#[test]
fn nothing_overtakes_what_a_drain_left_for_later() {
    static MODULES: &[RegisterFn] = &[test_module];
    with_router(MODULES, |router| {
        let _a = bind(&router, "a@localhost/r");
        let b = bind(&router, "b@localhost/r");
        chat(&router, "z@localhost/x", "a@localhost/r", "chain");
        assert!(
            !router.queue.borrow().is_empty(),
            "the budget left some for a task"
        );
        // A stanza routed now from outside any scope comes behind all of them: every one
        // routed so far reaches b before it (the router delivers the queue first).
        let before = CHAINED.with(|c| c.get());
        chat(&router, "z@localhost/x", "b@localhost/r", "after");
        while !router.queue.borrow().is_empty() {
            router.drain();
        }
        let got = out(&b);
        assert_eq!(got.matches("id='chain'").count(), DRAIN_BUDGET + 10);
        let at = got.find("id='after'").expect("delivered");
        let ahead = got[..at].matches("id='chain'").count();
        assert!(
            ahead >= before,
            "{ahead} of the {before} routed before it came first"
        );
        take_log();
    });
}

/// A module sending from a future (outside any scope) is not re-entered either: the stanza
/// waits for a task, which runs after the module's code returned to the executor (glommio
/// polls a spawned task at once, so the task yields first).
#[test]
fn a_send_outside_any_scope_is_delivered_later_not_inside_the_sender() {
    static MODULES: &[RegisterFn] = &[test_module];
    with_router(MODULES, |router| {
        let _a = bind(&router, "a@localhost/r");
        let _b = bind(&router, "b@localhost/r");
        take_log();
        STATE.with(|st| {
            let _held = st.borrow_mut();
            let route = Route::new(
                JidStr::trusted("z@localhost/x"),
                JidStr::trusted("a@localhost/r"),
            );
            Services::route(
                &*router,
                StanzaType::Message(MessageType::Chat),
                route,
                b"<message type='chat' id='relay'/>",
            );
            // Delivering now would run the relay link, which borrows STATE: it waits.
            assert_eq!(take_log(), Vec::<String>::new());
        });
        assert!(!router.queue.borrow().is_empty());
    });
}

fn answers_module(r: &mut Registry, _: &Config) {
    r.module("answers");
    r.iq_responses("test-q-", |_, a| {
        log(format!(
            "answer {:?} {} from {} to {}",
            a.ty, a.id, a.from, a.to
        ));
    });
}

/// A module's own IQ requests: the `result` or `error` that answers one reaches the module's
/// handler, whether it is addressed to the server or to an account's bare JID; answers with
/// other ids, and requests with the prefix, do not.
#[test]
fn answers_to_a_modules_requests_reach_its_handler() {
    static MODULES: &[RegisterFn] = &[answers_module];
    with_router(MODULES, |router| {
        let h = bind(&router, "a@localhost/r");
        let from = Jid::parse("a@localhost/r").unwrap();
        // What a client sends goes through from_client (the server's domain is handled on
        // the sender's shard); the rest is routed to the addressee's home shard.
        let iq = |ty: IqType, to: &str, id: &str| {
            let stanza = format!(
                "<iq type='{}' id='{id}' from='{from}' to='{to}'><query xmlns='urn:x:test'/></iq>",
                format!("{ty:?}").to_lowercase()
            );
            let to = Jid::parse(to).unwrap();
            router.from_client(FromClient {
                from: &from,
                handle: &h,
                ty: StanzaType::Iq(ty),
                to: Some(&to),
                id: Some(id),
                stamped: stanza.as_bytes(),
            });
        };
        iq(IqType::Result, "localhost", "test-q-1");
        iq(IqType::Error, "b@localhost", "test-q-2");
        iq(IqType::Result, "localhost", "other-3");
        iq(IqType::Get, "localhost", "test-q-4");
        assert_eq!(
            take_log(),
            [
                "answer Result test-q-1 from a@localhost/r to localhost",
                "answer Error test-q-2 from a@localhost/r to b@localhost",
            ]
        );
        // The request with the prefix was answered as any request is.
        let reply = out(&h);
        assert!(
            reply.contains("id='test-q-4'") && reply.contains("service-unavailable"),
            "{reply}"
        );
    });
}

#[test]
#[should_panic(expected = "overlaps")]
fn two_modules_cannot_share_an_answer_prefix() {
    let mut r = Registry::default();
    r.iq_responses("caps-", |_, _| {});
    r.iq_responses("caps-x-", |_, _| {});
}
