//! `POST /http-bind`: BOSH requests (XEP-0124, XEP-0206) on the HTTP listener. Parsing and the
//! protocol's rules are in [`super::bosh`]; the session's state in [`crate::c2s::bosh`]. Here a
//! request finds its session (on this shard, or by handing the HTTP connection to the shard
//! where the session lives), is submitted, and its answer is written when it comes.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::FutureExt;

use super::bosh::{self as wire, Condition, Reply};
use super::response::Response;
use super::Http;
use crate::c2s::bosh::{self, terminal, Answer, BoshLink, Entry, Slot, Submit};
use crate::c2s::limits::Preauth;

/// The BOSH endpoint (XEP-0206 §3 recommends it; XEP-0156 advertises it).
pub const BOSH_PATH: &str = "/http-bind";

/// How many times one request may be handed between shards before its sid counts as unknown
/// (two suffice: here → creating shard → home shard; a third covers a session moving while
/// the request travels).
const MAX_HOPS: u8 = 3;

/// Most nesting inside `<body/>` (the framer applies the stanza limits after).
const MAX_BODY_DEPTH: usize = 64;

/// The default response type (BOSH-HTTP-02).
const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// An HTTP connection moving to the shard where the BOSH session of its request lives.
pub struct Handoff {
    /// The socket (a dup of the original descriptor).
    pub fd: OwnedFd,
    /// TLS state on the HTTPS port.
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// The buffered request (first) and whatever followed it.
    pub buf: Vec<u8>,
    /// The peer address.
    pub peer: SocketAddr,
    /// The connection's place among its address's unauthenticated connections.
    pub preauth: Option<Preauth>,
    /// How many shards this request has been handed through.
    pub hops: u8,
}

/// What the connection does with a BOSH request.
pub(super) enum Step {
    /// Write this answer.
    Answer(Answer, Option<String>),
    /// Wait for the session's answer (at most `wait`, then the request expires).
    Wait(Rc<BoshLink>, Rc<Slot>, Duration, u64),
    /// Hand the connection (its request still buffered) to this shard.
    Hop(usize),
}

impl Http {
    /// A complete `POST /http-bind` request: finds or creates its session and submits it.
    pub(super) fn bosh_request(
        &self,
        body: &[u8],
        secure: bool,
        peer: SocketAddr,
        hops: u8,
    ) -> Step {
        let parsed = match wire::parse_body(body, MAX_BODY_DEPTH) {
            Ok(b) => b,
            // BOSH-HTTP-03: not one `<body/>` of complete elements.
            Err(c) => return Step::Answer(terminal(c, false), None),
        };
        let Some(rid) = parsed.rid else {
            return Step::Answer(terminal(Condition::BadRequest, parsed.ver.is_none()), None);
        };
        let Some(sid) = parsed.sid else {
            return self.bosh_create(&parsed, rid, secure, peer);
        };
        let here = self.c2s.shard();
        match self.c2s.bosh.get(sid) {
            Some(Entry::Local(link)) => {
                let content = link.content_type();
                match link.submit(bosh::Request::from_body(&parsed), secure) {
                    Submit::Now(a) => Step::Answer(a, content),
                    Submit::Wait(slot, wait) => Step::Wait(link, slot, wait, rid),
                }
            }
            Some(Entry::Moved(shard)) if hops < MAX_HOPS => Step::Hop(shard),
            None => match bosh::sid_shard(sid) {
                Some(s) if s != here && s < self.c2s.shards() && hops < MAX_HOPS => Step::Hop(s),
                // BOSH-SESS-04
                _ => Step::Answer(terminal(Condition::ItemNotFound, false), None),
            },
            Some(Entry::Moved(_)) => Step::Answer(terminal(Condition::ItemNotFound, false), None),
        }
    }

    /// Session creation (BOSH-SESS-01..03): the session lives on this shard until the client
    /// authenticates.
    fn bosh_create(&self, b: &wire::Body<'_>, rid: u64, secure: bool, peer: SocketAddr) -> Step {
        let legacy = b.ver.is_none();
        let fail = |c: Condition| Step::Answer(terminal(c, legacy), None);
        let params = match wire::negotiate(b, &self.config.http.bosh) {
            Ok(p) => p,
            Err(c) => return fail(c),
        };
        let Some(to) = b.to else {
            return fail(Condition::ImproperAddressing);
        };
        let domain = to.to_ascii_lowercase();
        if !self.config.domains.contains(&domain) {
            return fail(Condition::HostUnknown);
        }
        if self.c2s.full() {
            tracing::warn!(%peer, "connection limit reached (BOSH session)");
            return fail(Condition::PolicyViolation);
        }
        // Issue 8: a session counts among its address's unauthenticated connections.
        let preauth = match self.c2s.admit(peer) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(%peer, ?why, "per-address limit (BOSH session)");
                return fail(Condition::PolicyViolation);
            }
        };
        let shard = self.c2s.shard();
        let handle = self.c2s.new_handle();
        let created = BoshLink::create(
            handle.clone(),
            bosh::new_sid(shard),
            domain,
            b.lang,
            params,
            rid,
            b.newkey,
            secure,
            shard,
        );
        let (link, slot) = match created {
            Ok(x) => x,
            Err(c) => return fail(c),
        };
        let wait = link.wait();
        self.c2s
            .bosh_session(handle, link.clone(), peer, secure, preauth);
        Step::Wait(link, slot, wait, rid)
    }

    /// Waits for a held request's answer: at most `wait`, after which the session answers it
    /// (BOSH-HOLD-03).
    pub(super) async fn bosh_wait(
        link: Rc<BoshLink>,
        slot: Rc<Slot>,
        wait: Duration,
        rid: u64,
    ) -> Answer {
        let answered = futures_lite::future::poll_fn(|cx| slot.poll(cx).map(Some));
        let first = answered
            .or(async {
                glommio::timer::sleep(wait).await;
                None
            })
            .await;
        if let Some(a) = first {
            return a;
        }
        link.expire(rid);
        let again = futures_lite::future::poll_fn(|cx| slot.poll(cx).map(Some));
        // `expire` answers it; should it not (a bug), the client gets an empty body rather
        // than a hung request.
        again
            .or(async {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                None
            })
            .await
            .unwrap_or_else(|| {
                let mut body = Vec::new();
                wire::write_body(&mut body, &Reply::default(), b"");
                Answer::Body(body)
            })
    }

    /// Writes a BOSH answer; `None` when the connection is to close without one.
    pub(super) fn bosh_response(
        &self,
        answer: &Answer,
        content: Option<&str>,
        origin: Option<&str>,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let date = self.date();
        let cors = &self.config.http.cors;
        match answer {
            Answer::Body(body) => {
                Response::new(200)
                    .header("Content-Type", content.unwrap_or(CONTENT_TYPE))
                    .header("Cache-Control", "no-store")
                    .cors(cors, origin)
                    .write(out, &date, body, keep_alive, false);
                true
            }
            Answer::Status(status) => {
                Response::new(*status)
                    .header("Content-Type", "text/plain; charset=utf-8")
                    .cors(cors, origin)
                    .write(
                        out,
                        &date,
                        super::response::reason(*status).as_bytes(),
                        keep_alive,
                        false,
                    );
                true
            }
            Answer::Moved(_) | Answer::Drop => false,
        }
    }

    /// Hands the connection (`buf` starting with the request) to `shard`; false if it could
    /// not be (the server is stopping, or the descriptor could not be duplicated).
    pub(super) async fn hop(
        &self,
        io: super::io::Io,
        buf: Vec<u8>,
        peer: SocketAddr,
        preauth: Option<Preauth>,
        hops: u8,
        shard: usize,
    ) -> bool {
        let (sock, tls) = io.into_parts();
        // SAFETY: dup of a descriptor we own; the result is owned by the OwnedFd.
        let raw = unsafe { libc::dup(sock.as_raw_fd()) };
        if raw < 0 {
            tracing::error!(error = %std::io::Error::last_os_error(), "dup failed");
            return false;
        }
        // SAFETY: a fresh descriptor from dup, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        drop(sock);
        let h = Handoff {
            fd,
            tls,
            buf,
            peer,
            preauth,
            hops: hops + 1,
        };
        self.c2s
            .send_to_shard(shard, crate::shard::ShardMsg::Adopt(Box::new(h)))
            .await
    }
}
