//! XEP-0352: Client State Indication. A client that is not in front of its user says
//! `<inactive/>`; the server then holds back what can wait — presence updates and messages
//! that carry only chat states (XEP-0085) — and sends it, in the original order, as soon as
//! something that cannot wait arrives for that resource (a message with a body, an IQ, a
//! subscription request, ...), when the held bytes would pass the bound, or when the client
//! says `<active/>`. Mobile clients save radio wake-ups and battery; nothing is dropped and
//! nothing is reordered.
//!
//! The state belongs to one bound resource (its `Resource::ext` slot) and starts `active` on
//! every stream (CSI-03). `<active/>` and `<inactive/>` are never answered (CSI-02); sent
//! before a resource is bound they are accepted and have no effect, as there is nothing yet
//! to hold back. The held bytes are bounded by half of `--max-send-queue` (they are queued
//! for the client as its own traffic when flushed). Other entities cannot learn the state
//! (CSI-05): held stanzas are accepted like delivered ones.
//!
//! This module is the worked example of three extension points: a stream feature, a handler
//! for non-stanza elements by namespace, and a `BeforeWrite` link (see `docs/MODULES.md`).

use crate::config::Config;
use std::cell::Cell;
use std::rc::Rc;

use crate::core::events::{priority, BeforeWrite, Kinds, SessionEnded, ToClient};
use crate::core::{Ctx, Flow, Nonza, Registry};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StreamCondition, StreamError};
use crate::xmpp::ns;
use crate::xmpp::stanza::{PresenceType, StanzaType};

/// The CSI namespace.
pub const NS_CSI: &str = "urn:xmpp:csi:0";
/// XEP-0085 chat states.
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// One resource's state (in its `Resource::ext` slot).
#[derive(Default)]
struct Csi {
    inactive: bool,
    /// Stanzas held back, in order, back to back.
    held: Vec<u8>,
    /// Where each held stanza ends in `held` (flushed one stanza at a time, so the send
    /// queue keeps stanza boundaries).
    ends: Vec<usize>,
}

/// How many resources on this shard are inactive, and the switch of the hold-back link: on
/// while there is one, so that otherwise the link costs nothing.
#[derive(Default)]
struct Inactive {
    count: Cell<usize>,
    armed: Rc<Cell<bool>>,
}

impl Inactive {
    fn add(&self, n: isize) {
        let count = self.count.get().saturating_add_signed(n);
        self.count.set(count);
        self.armed.set(count > 0);
    }
}

/// Register the stream feature, the `<active/>`/`<inactive/>` handler and the hold-back link.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("csi");
    r.stream_feature(Element::new("csi", NS_CSI));
    let bound = config.max_send_queue / 2;
    let inactive = Rc::new(Inactive::default());
    {
        let inactive = inactive.clone();
        r.nonza(NS_CSI, move |ctx, n| on_nonza(ctx, n, &inactive));
    }
    r.hook_armed::<BeforeWrite>(
        Kinds::PRESENCE | Kinds::MESSAGE,
        priority::DEFER,
        inactive.armed.clone(),
        move |ctx, w| before_write(ctx, w, bound),
    );
    r.hook::<SessionEnded>(priority::PROTOCOL, move |_, resource| {
        if resource.ext.get::<Csi>().is_some_and(|c| c.inactive) {
            inactive.add(-1);
        }
        None
    });
}

fn on_nonza(
    ctx: &Ctx,
    n: &Nonza<'_>,
    inactive_count: &Inactive,
) -> Result<Option<crate::core::Pending>, StreamError> {
    let inactive = match n.element.name.as_str() {
        "inactive" => true,
        "active" => false,
        other => {
            return Err(StreamError::with_text(
                StreamCondition::UnsupportedStanzaType,
                format!("unexpected <{other}/> in {NS_CSI}"),
            ))
        }
    };
    let Some(jid) = n.bound else {
        return Ok(None);
    };
    let mut sessions = ctx.sessions().borrow_mut();
    let Some(resource) = sessions
        .account_mut(jid.bare_str())
        .and_then(|a| a.get_mut(jid.resource()?))
    else {
        return Ok(None);
    };
    let state = resource.ext.get_or_default::<Csi>();
    match (state.inactive, inactive) {
        (false, true) => inactive_count.add(1),
        (true, false) => inactive_count.add(-1),
        _ => {}
    }
    state.inactive = inactive;
    if !inactive {
        // CSI-04: everything held goes before whatever the client asks next.
        flush(state, n.handle);
    }
    Ok(None)
}

fn before_write(ctx: &Ctx, w: &ToClient<'_>, bound: usize) -> Flow {
    let mut sessions = ctx.sessions().borrow_mut();
    let Some(state) = sessions
        .account_mut(w.resource.bare_str())
        .and_then(|a| a.get_mut(w.resource.resource()?))
        .and_then(|r| r.ext.get_mut::<Csi>())
    else {
        return Flow::Continue;
    };
    if !state.inactive {
        return Flow::Continue;
    }
    if can_wait(ctx, w) && state.held.len() + w.stanza.len() <= bound {
        state.held.extend_from_slice(w.stanza);
        state.ends.push(state.held.len());
        return Flow::Handled(None);
    }
    // It cannot wait (or the hold is full): what waited goes first, in order.
    flush(state, w.handle);
    Flow::Continue
}

/// Presence updates and messages with nothing but chat states can wait.
fn can_wait(ctx: &Ctx, w: &ToClient<'_>) -> bool {
    match w.ty {
        StanzaType::Presence(PresenceType::Available | PresenceType::Unavailable) => true,
        StanzaType::Message(_) => {
            let Ok(el) = xml::parse_element(
                w.stanza,
                &StreamNs::new(ns::CLIENT),
                &ctx.config().xml_limits(),
            ) else {
                return false;
            };
            let mut children = el.elements().peekable();
            children.peek().is_some() && children.all(|c| c.ns == NS_CHATSTATES)
        }
        _ => false,
    }
}

fn flush(state: &mut Csi, handle: &crate::core::ClientHandle) {
    let mut start = 0;
    for end in state.ends.drain(..) {
        if let Some(stanza) = state.held.get(start..end) {
            handle.send(stanza);
        }
        start = end;
    }
    state.held = Vec::new();
}
