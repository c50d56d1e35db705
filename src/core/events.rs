//! Typed events and their ordered handler chains.
//!
//! Every point where a module may see or stop what the server does is an [`Event`]: a marker
//! type naming the argument its handlers get. A module adds a handler with
//! [`Registry::hook`](super::Registry::hook) and a priority; a chain runs its handlers from
//! the highest priority down, and in registration order among equal priorities (the order of
//! `MODULES` in `main.rs`). Nothing replaces anything: a second handler is a second link.
//!
//! Two kinds of chain:
//!
//! * **Filters** ([`Filter`] events: a stanza on its way) run until a handler returns
//!   [`Flow::Handled`]; then the rest of the chain and the router's default action are skipped.
//!   [`Flow::Continue`] passes the stanza on. This is how a module takes over presence,
//!   stores a message nobody can receive, or (later) blocks, archives or copies one.
//! * **Notifications** ([`Notice`] events: something happened) run every handler; each may
//!   return a future, and the futures are joined.
//!
//! Handlers run on the shard thread with the router in a delivery scope: whatever they route
//! is queued and delivered after they return (see `router` — "Re-entrance"), so a handler is
//! never re-entered by its own sends and may hold its own `RefCell` borrows while routing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::sessions::{ClientHandle, Resource};
use super::{Ctx, Pending, Route};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::stanza::{Kind, PresenceType, StanzaType};

/// The priorities modules use, so that chains run in a meaningful order whatever the order
/// of `MODULES`.
pub mod priority {
    /// Policy that may refuse a stanza before anyone acts on it (privacy lists, blocking).
    pub const POLICY: i32 = 100;
    /// Observers that must see what is delivered and never take it (archive, carbons).
    pub const OBSERVE: i32 = 50;
    /// The module that implements the stanza's protocol and takes it (RFC 6121 presence,
    /// offline storage).
    pub const PROTOCOL: i32 = 0;
    /// What holds a stanza back for later, after everything else had its say (CSI).
    pub const DEFER: i32 = -50;
}

/// What a filter handler did with the stanza.
pub enum Flow {
    /// Not taken: the next handler, and then the router's default action, see it.
    Continue,
    /// Taken (delivered, stored, answered or deliberately dropped): nothing after this handler
    /// runs. The future, if any, is awaited by whoever sent the stanza (the sending connection
    /// reads on only once it completes), which keeps order and bounds the work one client
    /// can start.
    Handled(Option<Pending>),
}

/// An event: a marker type, the argument its handlers get, and where its chain lives.
pub trait Event: 'static {
    /// The handlers' argument.
    type Arg<'a>;
    /// What a handler returns: [`Flow`] for filters, `Option<Pending>` for notifications.
    type Out;
    /// The event's name (logs, the chain table in `xmppd check`).
    const NAME: &'static str;
    /// Its chain in a [`Hooks`].
    fn chain(hooks: &Hooks) -> &Chain<Self>;
    /// Its chain in a [`Hooks`], for registration.
    fn chain_mut(hooks: &mut Hooks) -> &mut Chain<Self>;
}

/// A filter event (handlers return [`Flow`]).
pub trait Filter: Event<Out = Flow> {}
/// A notification event (every handler runs).
pub trait Notice: Event<Out = Option<Pending>> {}

/// A handler of event `E`.
pub type Handler<E> = Rc<dyn for<'a> Fn(&Ctx, &<E as Event>::Arg<'a>) -> <E as Event>::Out>;

/// The stanza kinds a filter handler wants to see: the router skips a chain (and builds no
/// argument) for a kind none of its links wants, so a presence-only link costs messages
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    /// Nothing.
    pub const NONE: Kinds = Kinds(0);
    /// Messages.
    pub const MESSAGE: Kinds = Kinds(1);
    /// Presence.
    pub const PRESENCE: Kinds = Kinds(2);
    /// IQs.
    pub const IQ: Kinds = Kinds(4);
    /// Every kind.
    pub const ALL: Kinds = Kinds(7);

    /// The set with only `kind`.
    pub fn of(kind: Kind) -> Kinds {
        match kind {
            Kind::Message => Kinds::MESSAGE,
            Kind::Presence => Kinds::PRESENCE,
            Kind::Iq => Kinds::IQ,
        }
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: Kind) -> bool {
        self.0 & Kinds::of(kind).0 != 0
    }
}

impl std::ops::BitOr for Kinds {
    type Output = Kinds;
    fn bitor(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }
}

/// One link of a chain.
struct Link<E: Event + ?Sized> {
    priority: i32,
    module: &'static str,
    kinds: Kinds,
    /// The module's switch: the link runs only while it is on (None: always).
    armed: Option<Rc<Cell<bool>>>,
    handler: Handler<E>,
}

impl<E: Event + ?Sized> Link<E> {
    fn wants(&self, kind: Kind) -> bool {
        self.kinds.contains(kind) && self.armed.as_ref().is_none_or(|a| a.get())
    }
}

/// The ordered handlers of one event.
pub struct Chain<E: Event + ?Sized> {
    links: Vec<Link<E>>,
    /// The kinds any link wants.
    kinds: Kinds,
    /// Some link has a switch (then `wants` asks the links).
    switched: bool,
}

impl<E: Event + ?Sized> Default for Chain<E> {
    fn default() -> Self {
        Chain {
            links: Vec::new(),
            kinds: Kinds::NONE,
            switched: false,
        }
    }
}

impl<E: Event> Chain<E> {
    /// Add a handler: after every handler of higher or equal priority.
    pub(super) fn add(
        &mut self,
        priority: i32,
        module: &'static str,
        kinds: Kinds,
        armed: Option<Rc<Cell<bool>>>,
        handler: Handler<E>,
    ) {
        self.kinds = self.kinds | kinds;
        self.switched |= armed.is_some();
        let at = self
            .links
            .iter()
            .position(|l| l.priority < priority)
            .unwrap_or(self.links.len());
        self.links.insert(
            at,
            Link {
                priority,
                module,
                kinds,
                armed,
                handler,
            },
        );
    }

    /// True when some handler wants stanzas of `kind` (else the router skips the chain and
    /// builds no argument).
    pub fn wants(&self, kind: Kind) -> bool {
        self.kinds.contains(kind) && (!self.switched || self.links.iter().any(|l| l.wants(kind)))
    }

    /// `(module, priority)` of each handler, in the order they run.
    pub fn order(&self) -> Vec<(&'static str, i32)> {
        self.links.iter().map(|l| (l.module, l.priority)).collect()
    }
}

impl<E: Filter> Chain<E> {
    /// Run the handlers that want `kind` until one takes the stanza.
    pub fn run(&self, ctx: &Ctx, kind: Kind, arg: &E::Arg<'_>) -> Flow {
        for l in self.links.iter().filter(|l| l.wants(kind)) {
            if let Flow::Handled(p) = (l.handler)(ctx, arg) {
                return Flow::Handled(p);
            }
        }
        Flow::Continue
    }
}

impl<E: Notice> Chain<E> {
    /// Run every handler; their futures complete one after another in the returned one.
    pub fn notify(&self, ctx: &Ctx, arg: &E::Arg<'_>) -> Option<Pending> {
        super::join(
            self.links
                .iter()
                .filter_map(|l| (l.handler)(ctx, arg))
                .collect(),
        )
    }
}

/// A validated stanza from a bound local client, stamped, before routing.
pub struct FromClient<'a> {
    /// The sender's bound full JID.
    pub from: &'a Jid,
    /// The sender's connection (its [`ClientHandle::ext`] holds per-session state that a
    /// filter reads without a session-table lookup).
    pub handle: &'a Rc<ClientHandle>,
    /// Kind and type.
    pub ty: StanzaType,
    /// The parsed `to`, if any.
    pub to: Option<&'a Jid>,
    /// The stanza id.
    pub id: Option<&'a str>,
    /// The stanza stamped with `from` (and `to`/`xml:lang` where added).
    pub stamped: &'a [u8],
}

/// A stanza arriving for a local account (or service entity) on its home shard.
pub struct Inbound<'a> {
    /// Kind and type.
    pub ty: StanzaType,
    /// Addressee and sender (normalized).
    pub route: Route<'a>,
    /// The stanza as routed.
    pub stanza: &'a [u8],
}

/// A routed stanza about to be queued for one connected resource.
pub struct ToClient<'a> {
    /// The resource's full JID.
    pub resource: &'a Jid,
    /// Its connection.
    pub handle: &'a Rc<ClientHandle>,
    /// Kind and type.
    pub ty: StanzaType,
    /// Addressee (bare or full, as routed) and sender.
    pub route: Route<'a>,
    /// The stanza.
    pub stanza: &'a [u8],
}

/// Notifications a local account's own service is about to send (PEP, XEP-0163: from the
/// account's bare JID, kind message): handlers remove the recipients that must not get them
/// (privacy lists and XEP-0191 blocking, PEP-09), and always continue.
pub struct Recipients<'a> {
    /// The sending account's bare JID.
    pub from: JidStr<'a>,
    /// The full or bare JIDs it is for.
    pub to: RefCell<Vec<&'a str>>,
}

/// Presence notifications from a local account about to go to its contacts (RFC 6121
/// broadcasts, and the current presence shared with one contact): handlers remove the
/// contacts that must not get them (privacy lists' `presence-out`), and always continue.
pub struct Audience<'a> {
    /// The sender: a resource's full JID (or the account's bare JID).
    pub from: JidStr<'a>,
    /// Available or unavailable.
    pub ty: PresenceType,
    /// The contacts it is for (bare or full JIDs).
    pub to: RefCell<Vec<&'a str>>,
}

/// A resource was bound.
pub struct Bound<'a> {
    /// Its full JID.
    pub jid: &'a Jid,
    /// Its connection.
    pub handle: &'a Rc<ClientHandle>,
}

/// A resource became available (initial presence).
pub struct Available<'a> {
    /// Its full JID.
    pub jid: &'a Jid,
    /// The priority it announced.
    pub priority: i8,
}

macro_rules! events {
    ($( $(#[$doc:meta])* $name:ident ($field:ident): $kind:ident, $arg:ty, $out:ty; )*) => {
        /// The chains of every event, one field each.
        #[derive(Default)]
        pub struct Hooks {
            $( $field: Chain<$name>, )*
        }

        impl Hooks {
            /// `(event, [(module, priority)])` for every event, in the order handlers run.
            pub fn table(&self) -> Vec<(&'static str, Vec<(&'static str, i32)>)> {
                vec![$( ($name::NAME, self.$field.order()), )*]
            }
        }

        $(
            $(#[$doc])*
            pub enum $name {}

            impl Event for $name {
                type Arg<'a> = $arg;
                type Out = $out;
                const NAME: &'static str = stringify!($field);
                fn chain(hooks: &Hooks) -> &Chain<Self> {
                    &hooks.$field
                }
                fn chain_mut(hooks: &mut Hooks) -> &mut Chain<Self> {
                    &mut hooks.$field
                }
            }

            impl $kind for $name {}
        )*
    };
}

events! {
    /// A stanza from a bound client, stamped and validated, before the router looks at its
    /// addressee (RFC 6121 presence processing, blocking, carbons, archive).
    ClientStanza (client_stanza): Filter, FromClient<'a>, Flow;
    /// A message, presence or IQ addressed to a local account's bare JID, on its home shard,
    /// before the RFC 6121 §8.5.2 rules (inbound presence and subscriptions, privacy, archive).
    /// Answers to the account's own IQ requests are dispatched by the router after this.
    DeliverBare (deliver_bare): Filter, Inbound<'a>, Flow;
    /// The same for a full JID of a local account (§8.5.3).
    DeliverFull (deliver_full): Filter, Inbound<'a>, Flow;
    /// A normal or chat message for an existing account with no resource that can take it
    /// (offline storage). Not taken: the sender gets `service-unavailable`.
    Undeliverable (undeliverable): Filter, Inbound<'a>, Flow;
    /// A routed stanza about to be queued for one connected resource (privacy lists, CSI).
    /// Handled: not queued (the handler dropped or kept it). Everything routed passes here,
    /// IQ results and errors included; what modules write straight into a client's queue
    /// (roster pushes, the offline backlog, the session's own answers) does not.
    BeforeWrite (before_write): Filter, ToClient<'a>, Flow;
    /// Presence notifications a local account's resource sends to its contacts (raised by the
    /// presence module for each broadcast and each share, kind presence): handlers narrow
    /// the audience (privacy lists' `presence-out`).
    PresenceOut (presence_out): Filter, Audience<'a>, Flow;
    /// Notifications an account's own service sends (raised by PEP for each notification, its
    /// last-item replays included, kind message): handlers narrow the recipients (PEP-09).
    NotifyOut (notify_out): Filter, Recipients<'a>, Flow;
    /// A resource was bound (it is in the session table).
    SessionBound (session_bound): Notice, Bound<'a>, Option<Pending>;
    /// A bound resource went away; it is no longer in the session table, and the argument is
    /// what it was, with every module's per-resource state (`Resource::ext`).
    SessionEnded (session_ended): Notice, Resource, Option<Pending>;
    /// A resource sent initial presence (raised by the presence module).
    ResourceAvailable (resource_available): Notice, Available<'a>, Option<Pending>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter event for tests (running chains is tested with a router: `router::tests`).
    enum Probe {}
    struct ProbeHooks {
        chain: Chain<Probe>,
    }
    impl Event for Probe {
        type Arg<'a> = RefCell<Vec<&'static str>>;
        type Out = Flow;
        const NAME: &'static str = "probe";
        fn chain(_: &Hooks) -> &Chain<Self> {
            unreachable!()
        }
        fn chain_mut(_: &mut Hooks) -> &mut Chain<Self> {
            unreachable!()
        }
    }
    impl Filter for Probe {}

    fn link(name: &'static str, stop: bool) -> Handler<Probe> {
        Rc::new(move |_, seen: &RefCell<Vec<&'static str>>| {
            seen.borrow_mut().push(name);
            if stop {
                Flow::Handled(None)
            } else {
                Flow::Continue
            }
        })
    }

    #[test]
    fn chain_runs_by_priority_then_registration_order() {
        let mut h = ProbeHooks {
            chain: Chain::default(),
        };
        h.chain.add(0, "b", Kinds::ALL, None, link("b", false));
        h.chain.add(10, "a", Kinds::ALL, None, link("a", false));
        h.chain.add(0, "c", Kinds::MESSAGE, None, link("c", false));
        h.chain.add(-5, "d", Kinds::ALL, None, link("d", false));
        h.chain
            .add(10, "a2", Kinds::PRESENCE, None, link("a2", false));
        assert_eq!(
            h.chain.order(),
            vec![("a", 10), ("a2", 10), ("b", 0), ("c", 0), ("d", -5)]
        );
        assert!(h.chain.wants(Kind::Iq) && h.chain.wants(Kind::Presence));
        let mut only = ProbeHooks {
            chain: Chain::default(),
        };
        assert!(!only.chain.wants(Kind::Message));
        // A switched link is skipped while its switch is off.
        let on = Rc::new(Cell::new(false));
        let mut switched = ProbeHooks {
            chain: Chain::default(),
        };
        switched
            .chain
            .add(0, "s", Kinds::MESSAGE, Some(on.clone()), link("s", false));
        assert!(!switched.chain.wants(Kind::Message));
        on.set(true);
        assert!(switched.chain.wants(Kind::Message));
        only.chain
            .add(0, "p", Kinds::PRESENCE | Kinds::IQ, None, link("p", false));
        assert!(only.chain.wants(Kind::Presence) && only.chain.wants(Kind::Iq));
        assert!(!only.chain.wants(Kind::Message));
    }
}
