//! External components (XEP-0114, the accept protocol): the listener, the handshake, and the
//! component's stream as a link of the router.
//!
//! A component connects to any shard (the listeners share the port, like the client ports),
//! sends its header and `<handshake/>` there ([`handshake`]), claims its domain in the
//! process-wide [`Directory`](crate::core::components::Directory) (a second stream for a
//! connected domain gets `conflict`), and then moves to the home shard of its domain
//! (`shard_of(domain)`, the descriptor and the unread bytes in a [`Handoff`]), where the
//! router finds its send queue (`Router::components`). Stanzas for the component's domain
//! and its subdomains reach it from every shard with at most one hop; what it sends is
//! checked (`to` and `from` present, `from` in its domain: COMP-06) and routed like any
//! stanza, from its home shard.

pub mod config;
mod conn;
pub mod handshake;

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use glommio::net::TcpListener;

pub use config::{ComponentArgs, ComponentConfig};

use crate::config::Config;
use crate::core::components::Claim;
use crate::router::Router;
use crate::shard::Links;
use crate::xml::Framer;
use crate::xmpp::error::{StreamCondition, StreamError};

/// Component connections still in their handshake, per shard, beyond which new ones are
/// closed at once (the port is meant for a few trusted processes).
const MAX_HANDSHAKING: usize = 64;

/// The component service of one shard.
pub struct Components {
    router: Rc<Router>,
    config: Arc<Config>,
    links: Arc<Links>,
    /// Connections on this shard still in their handshake.
    handshaking: Cell<usize>,
}

/// A component stream moving to the home shard of its domain after its handshake.
pub struct Handoff {
    /// The socket (a dup of the original descriptor).
    pub fd: OwnedFd,
    /// The peer address.
    pub peer: SocketAddr,
    /// The component's domain (claimed).
    pub domain: String,
    /// Its claim in the directory.
    pub claim: Claim,
    /// The framer, inside the open stream at an element boundary.
    pub framer: Framer,
    /// Bytes read after the handshake and not processed yet.
    pub unread: Vec<u8>,
}

impl Components {
    /// The component service of the shard whose router this is.
    pub fn new(router: Rc<Router>, config: Arc<Config>, links: Arc<Links>) -> Rc<Components> {
        Rc::new(Components {
            router,
            config,
            links,
            handshaking: Cell::new(0),
        })
    }

    /// Accept component connections until the server stops.
    pub async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        while let Some((stream, peer)) =
            crate::c2s::accept_next(&listener, &self.links, "component").await
        {
            if self.handshaking.get() >= MAX_HANDSHAKING {
                tracing::warn!(%peer, "too many component connections in their handshake");
                drop(stream);
                continue;
            }
            let me = self.clone();
            glommio::spawn_local(async move {
                conn::accepted(me, stream, peer).await;
            })
            .detach();
        }
    }

    /// A component stream that completed its handshake on another shard arrives here.
    pub fn adopt(self: &Rc<Self>, h: Handoff) {
        let me = self.clone();
        glommio::spawn_local(async move {
            conn::adopted(me, h).await;
        })
        .detach();
    }

    /// The server is stopping: every component stream on this shard is closed with
    /// `system-shutdown`.
    pub fn shutdown(&self) {
        for (_, h) in self.router.components.all() {
            h.request_close(StreamError::new(StreamCondition::SystemShutdown));
        }
    }
}
