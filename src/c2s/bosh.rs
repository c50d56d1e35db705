//! XMPP over BOSH (XEP-0124, XEP-0206) as a transport of the client connection: the state of
//! one BOSH session between the HTTP requests that carry it and the connection task (`conn`)
//! that drives the negotiator and the session, exactly as on TCP.
//!
//! **Where a session lives.** A [`BoshLink`] lives on one shard: the shard that created it
//! until the client authenticates, then the account's home shard (the link's state travels in
//! the connection's hand-off, like a TCP socket). Each shard keeps its own table of sids
//! ([`Table`], no lock): `Local` for a link living here, `Moved(shard)` for one that moved
//! away. A sid starts with the hex index of the shard that created it, so a request arriving
//! on any shard finds its session in at most two hops (here → creating shard → home shard).
//! A hop moves the HTTP connection itself (descriptor, TLS state and the buffered request, as
//! the TCP hand-off does), so every later request on that keep-alive connection is served
//! where the session lives, with no cross-shard message per request.
//!
//! **The byte stream the connection sees.** Requests are processed in `rid` order
//! (BOSH-HOLD-01): their payloads are appended to the link's input, which the connection task
//! reads as it reads a socket. Session creation and each `xmpp:restart` are a synthesized
//! stream header (`<stream:stream to= xml:lang= version='1.0'>`) and `type='terminate'` is
//! `</stream:stream>` after the payload, so the negotiator, the framer and the session run
//! unchanged. What the connection writes (stream header, features, stanzas, stream close) is
//! cut at element boundaries: the header gives the `authid`, elements wait in `out` for the
//! oldest held request, and each stanza without a namespace of its own gets
//! `xmlns='jabber:client'` (XBOSH-08: inside `<body/>` it would otherwise be in the httpbind
//! namespace).
//!
//! **Requests.** An HTTP task submits a request ([`BoshLink::submit`]) and gets an answer at
//! once (a replayed response, an error) or a [`Slot`] to wait on, for at most `wait` seconds
//! ([`BoshLink::expire`]). At most `hold` requests are held; output goes to the oldest one
//! at once (BOSH-HOLD-04/05), and answers leave in rid order (BOSH-HOLD-02). Responses are
//! kept for replay within the `requests` window (BOSH-RID-02).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::core::sessions::{give_buffer, take_buffer};
use crate::core::ClientHandle;
use crate::http::bosh::{self as wire, Arrival, Condition, Keys, Params, Reply, ReplyType, Rids};
use crate::xml::{self, Frame, Framer, Limits};

/// Output waiting for a request beyond this is not added to: the connection's send queue
/// keeps the rest, under its own bound.
const OUT_HIGH: usize = 64 * 1024;

/// How long a session that ended stays known: its last words (a stream error) for the
/// client's next request, then `item-not-found` as the client expects it.
const FAREWELL_KEPT: Duration = Duration::from_secs(30);

/// Milliseconds on a process-wide monotonic clock (the rid cache's timestamps travel between
/// shards with the session).
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A new sid: the creating shard's index (two hex digits) and 128 random bits (BOSH-ERR-03:
/// unpredictable, and it tells nothing about other sessions).
pub fn new_sid(shard: usize) -> String {
    let mut b = [0u8; 16];
    crate::util::random_bytes(&mut b);
    format!("{:02x}{}", shard % 256, crate::util::hex(&b))
}

/// The shard that created the session `sid`, if the sid is one of ours.
pub fn sid_shard(sid: &str) -> Option<usize> {
    if sid.len() != 34 || !sid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(sid.get(..2)?, 16).ok()
}

/// One request, owned (its payload is copied out of the HTTP buffer).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Its rid.
    pub rid: u64,
    /// Complete child elements of `<body/>`.
    pub payload: Vec<u8>,
    /// `xmpp:restart='true'`.
    pub restart: bool,
    /// `type='terminate'`.
    pub terminate: bool,
    /// `pause`, in seconds.
    pub pause: Option<u32>,
    /// The client's `ack`.
    pub ack: Option<u64>,
    /// Key sequencing (§15).
    pub key: Option<String>,
    /// Key sequencing (§15).
    pub newkey: Option<String>,
    /// `to`, for a restart's stream header.
    pub to: Option<String>,
    /// `xml:lang`, for a restart's stream header.
    pub lang: Option<String>,
}

impl Request {
    /// An owned copy of a parsed body.
    pub fn from_body(b: &wire::Body<'_>) -> Request {
        Request {
            rid: b.rid.unwrap_or(0),
            payload: b.payload.to_vec(),
            restart: b.restart,
            terminate: b.is_terminate(),
            pause: b.pause,
            ack: b.ack,
            key: b.key.map(str::to_string),
            newkey: b.newkey.map(str::to_string),
            to: b.to.map(str::to_string),
            lang: b.lang.map(str::to_string),
        }
    }

    fn is_empty(&self) -> bool {
        self.payload.iter().all(|b| xml_ws(*b))
            && !self.restart
            && !self.terminate
            && self.pause.is_none()
    }
}

/// What an HTTP task does with its request.
#[derive(Debug)]
pub enum Answer {
    /// Answer HTTP 200 with this body.
    Body(Vec<u8>),
    /// Answer with this HTTP status and no body (errors for clients without `ver`, §17.1).
    Status(u16),
    /// The session lives on this shard now: hand the connection and its request there.
    Moved(usize),
    /// Close the connection without an answer (BOSH-SEC-01).
    Drop,
}

/// Where a held request's answer arrives.
#[derive(Default)]
pub struct Slot {
    answer: Cell<Option<Answer>>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn fill(&self, a: Answer) {
        self.answer.set(Some(a));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// The answer, once there is one.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<Answer> {
        match self.answer.take() {
            Some(a) => Poll::Ready(a),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

/// A submitted request's fate.
pub enum Submit {
    /// Answer now.
    Now(Answer),
    /// Wait on the slot (at most `wait` seconds, then [`BoshLink::expire`]).
    Wait(Rc<Slot>, Duration),
}

/// A request waiting for the rids before it (BOSH-HOLD-01).
struct Early {
    req: Request,
    slot: Rc<Slot>,
}

/// The part of a session that moves between shards (everything but wakers, slots and
/// timers).
pub struct BoshMove {
    sid: String,
    domain: String,
    params: Params,
    rids: Rids,
    keys: Keys,
    secure: bool,
    authid: String,
    out: Vec<u8>,
    /// BOSH-POLL-01: when the last request arrived, if it was empty and was answered empty
    /// (the rule compares request arrivals, §12).
    prev_empty: Option<u64>,
    /// The last request, if it was empty: its rid and arrival time, until it is answered.
    empty_pending: Option<(u64, u64)>,
    /// The shard the session was created on (its sid names it).
    origin: usize,
}

/// Why a session ends, for its last answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client terminated it (BOSH-TERM-01).
    Client,
    /// The server ended the stream (a stream error in `out`, XBOSH-06; or our close).
    Server,
    /// Nobody to tell (inactivity, shutdown while idle).
    Silent,
}

struct State {
    m: BoshMove,
    legacy: bool,
    /// Bytes for the connection task (stream headers, payloads, stream close).
    input: Vec<u8>,
    /// The client terminated: no input after what is in `input`.
    input_closed: bool,
    conn_waker: Option<Waker>,
    outframer: Framer,
    /// Processed requests not answered yet, in rid order.
    held: VecDeque<(u64, Rc<Slot>)>,
    /// With key sequencing (§15): the key each held request carried, so that a resend of a
    /// held rid (BOSH-RID-03) must carry it too.
    held_keys: Vec<(u64, String)>,
    /// The creation request, until the stream features make its answer.
    creating: Option<u64>,
    early: Vec<Early>,
    /// The session ended; its last answer, if one is kept for the next request.
    ended: Option<Option<Vec<u8>>>,
    /// Moved to this shard.
    moved: Option<usize>,
    /// When the last held request was answered (inactivity counts from there).
    idle_since: Instant,
    /// The inactivity period in force (`pause` extends it until the next request).
    inactivity: Option<Duration>,
    timer: Option<glommio::timer::Timer>,
    /// The server closed the stream or sent a stream error.
    server_closed: bool,
}

/// One BOSH session on the shard where it lives.
pub struct BoshLink {
    st: RefCell<State>,
    handle: Rc<ClientHandle>,
}

/// The per-shard table of BOSH sessions.
#[derive(Default)]
pub struct Table {
    map: RefCell<HashMap<String, Entry, ahash::RandomState>>,
}

/// A sid in a shard's table.
#[derive(Clone)]
pub enum Entry {
    /// The session lives here.
    Local(Rc<BoshLink>),
    /// It moved to this shard.
    Moved(usize),
}

impl Table {
    /// The entry of `sid`.
    pub fn get(&self, sid: &str) -> Option<Entry> {
        self.map.borrow().get(sid).cloned()
    }

    /// Adds or replaces the entry of `sid`.
    pub fn set(&self, sid: &str, e: Entry) {
        self.map.borrow_mut().insert(sid.to_string(), e);
    }

    /// Removes `sid`.
    pub fn remove(&self, sid: &str) {
        self.map.borrow_mut().remove(sid);
    }

    /// Sessions in the table (local and moved).
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message between shards: the session `sid` that moved to the sender ended, so the creating
/// shard forgets its `Moved` entry.
pub struct Gone {
    /// The sid.
    pub sid: String,
}

impl BoshLink {
    /// A new session (after [`wire::negotiate`]): `domain` is the `to` it serves. The
    /// creation request `rid` is held until the stream features answer it.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        handle: Rc<ClientHandle>,
        sid: String,
        domain: String,
        lang: Option<&str>,
        params: Params,
        rid: u64,
        newkey: Option<&str>,
        secure: bool,
        origin: usize,
    ) -> Result<(Rc<BoshLink>, Rc<Slot>), Condition> {
        let mut keys = Keys::default();
        keys.check(None, newkey)?;
        let rids = Rids::new(rid, params.requests);
        let inactivity = Some(Duration::from_secs(u64::from(params.inactivity)));
        let legacy = params.ver.is_none();
        let m = BoshMove {
            sid,
            domain,
            params,
            rids,
            keys,
            secure,
            authid: String::new(),
            out: Vec::new(),
            prev_empty: None,
            empty_pending: None,
            origin,
        };
        let mut st = State::new(m, legacy, inactivity);
        let header = stream_header(&st.m.domain, lang);
        st.input.extend_from_slice(&header);
        let slot = Rc::new(Slot::default());
        st.held.push_back((rid, slot.clone()));
        st.creating = Some(rid);
        let link = Rc::new(BoshLink {
            st: RefCell::new(st),
            handle,
        });
        Ok((link, slot))
    }

    /// The session arriving on its home shard.
    pub fn arrive(handle: Rc<ClientHandle>, m: Box<BoshMove>) -> Rc<BoshLink> {
        let legacy = m.params.ver.is_none();
        let inactivity = Some(Duration::from_secs(u64::from(m.params.inactivity)));
        Rc::new(BoshLink {
            st: RefCell::new(State::new(*m, legacy, inactivity)),
            handle,
        })
    }

    /// The session's id.
    pub fn sid(&self) -> String {
        self.st.borrow().m.sid.clone()
    }

    /// The shard that created the session.
    pub fn origin(&self) -> usize {
        self.st.borrow().m.origin
    }

    /// The session was created over HTTPS.
    pub fn secure(&self) -> bool {
        self.st.borrow().m.secure
    }

    /// The `wait` granted at creation.
    pub fn wait(&self) -> Duration {
        Duration::from_secs(u64::from(self.st.borrow().m.params.wait))
    }

    /// The response Content-Type (the `content` asked for at creation, BOSH-HTTP-02).
    pub fn content_type(&self) -> Option<String> {
        self.st.borrow().m.params.content.clone()
    }

    /// Takes a request that arrived for this session (`secure`: over HTTPS).
    pub fn submit(&self, req: Request, secure: bool) -> Submit {
        let mut st = self.st.borrow_mut();
        if let Some(shard) = st.moved {
            return Submit::Now(Answer::Moved(shard));
        }
        if let Some(last) = st.ended.as_mut() {
            // The session is over: its last words once, then it is unknown.
            return Submit::Now(match last.take() {
                Some(body) => Answer::Body(body),
                None => st.terminal(Condition::ItemNotFound),
            });
        }
        if st.m.secure && !secure {
            // BOSH-SEC-01: not over plain HTTP; the session itself goes on.
            return Submit::Now(Answer::Drop);
        }
        self.handle.last_rx.set(Instant::now());
        self.handle.ping_sent.set(None);
        let wait = Duration::from_secs(u64::from(st.m.params.wait));
        let rid = req.rid;
        match st.m.rids.classify(rid) {
            Arrival::Refused | Arrival::Gone => {
                Submit::Now(self.fail(&mut st, Condition::ItemNotFound))
            }
            Arrival::Replay => {
                let body =
                    st.m.rids
                        .cached(rid)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default();
                Submit::Now(Answer::Body(body))
            }
            Arrival::Held => {
                // BOSH-SEC-02: with keys in use, a resend carries the key of the original.
                if st.m.keys.in_use() {
                    let original = st.held_keys.iter().find(|(r, _)| *r == rid);
                    if original.map(|(_, k)| Some(k.as_str())) != Some(req.key.as_deref()) {
                        return Submit::Now(self.fail(&mut st, Condition::ItemNotFound));
                    }
                }
                // BOSH-RID-03: the older request for this rid is answered with a recoverable
                // error; the new one takes its place.
                let slot = Rc::new(Slot::default());
                if let Some(h) = st.held.iter_mut().find(|(r, _)| *r == rid) {
                    let old = std::mem::replace(&mut h.1, slot.clone());
                    let mut body = Vec::new();
                    let reply = Reply {
                        ty: ReplyType::Error,
                        ..Reply::default()
                    };
                    wire::write_body(&mut body, &reply, b"");
                    old.fill(Answer::Body(body));
                }
                Submit::Wait(slot, wait)
            }
            Arrival::Early => {
                if st.unanswered() >= st.m.params.requests as usize
                    && !req.terminate
                    && req.pause.is_none()
                {
                    // BOSH-POLL-02
                    return Submit::Now(self.fail(&mut st, Condition::PolicyViolation));
                }
                st.m.rids.waiting(rid);
                let slot = Rc::new(Slot::default());
                st.early.push(Early {
                    req,
                    slot: slot.clone(),
                });
                Submit::Wait(slot, wait)
            }
            Arrival::Next => {
                if st.unanswered() >= st.m.params.requests as usize
                    && !req.terminate
                    && req.pause.is_none()
                {
                    return Submit::Now(self.fail(&mut st, Condition::PolicyViolation));
                }
                let slot = Rc::new(Slot::default());
                if let Err(c) = self.process(&mut st, req, slot.clone()) {
                    return Submit::Now(self.fail(&mut st, c));
                }
                // Requests that waited for this one go next (BOSH-HOLD-01).
                loop {
                    let next = st.m.rids.last_processed() + 1;
                    let Some(i) = st.early.iter().position(|e| e.req.rid == next) else {
                        break;
                    };
                    let e = st.early.swap_remove(i);
                    st.m.rids.unwaiting(next);
                    if let Err(c) = self.process(&mut st, e.req, e.slot) {
                        return Submit::Now(self.fail(&mut st, c));
                    }
                }
                // The slot may be answered already (hold 0, pause, or output waiting).
                Submit::Wait(slot, wait)
            }
        }
    }

    /// A request in rid order: its payload goes to the connection, then it is held.
    fn process(&self, st: &mut State, req: Request, slot: Rc<Slot>) -> Result<(), Condition> {
        st.m.rids.processed(req.rid);
        st.m.keys.check(req.key.as_deref(), req.newkey.as_deref())?;
        if let Some(key) = req.key.as_ref() {
            let held = &st.held;
            st.held_keys
                .retain(|(r, _)| held.iter().any(|(h, _)| h == r));
            st.held_keys.push((req.rid, key.clone()));
        }
        match req.ack {
            Some(ack) => st.m.rids.client_ack(ack),
            // §9.2: in a session with acks, a request without one acknowledges every response
            // before it.
            None if st.m.params.ack => st.m.rids.client_ack(req.rid.saturating_sub(1)),
            None => {}
        }
        let now = now_ms();
        // BOSH-POLL-01 (BOSH-POLL-03: polling 0 imposes nothing): two empty requests that
        // arrived closer than `polling`, the first answered empty.
        let previous = st.m.prev_empty.take();
        if req.is_empty() {
            if st.m.params.polling > 0 && wire::too_frequent(previous, now, st.m.params.polling) {
                return Err(Condition::PolicyViolation);
            }
            st.m.empty_pending = Some((req.rid, now));
        } else {
            st.m.empty_pending = None;
        }
        // The inactivity period is the granted one again (a pause lasts until this request).
        st.inactivity = Some(Duration::from_secs(u64::from(st.m.params.inactivity)));
        if st.input.capacity() == 0 {
            st.input = take_buffer();
        }
        if req.restart {
            // XBOSH-03: a new stream; XBOSH-04: a payload beside it is ignored.
            let to = req.to.as_deref().unwrap_or(&st.m.domain).to_string();
            if to != st.m.domain {
                return Err(Condition::HostUnknown);
            }
            let header = stream_header(&to, req.lang.as_deref());
            st.input.extend_from_slice(&header);
        } else {
            st.input.extend_from_slice(&req.payload);
        }
        if req.terminate {
            st.input.extend_from_slice(b"</stream:stream>");
            st.input_closed = true;
        }
        if let Some(w) = st.conn_waker.take() {
            w.wake();
        }
        st.held.push_back((req.rid, slot));
        if let Some(pause) = req.pause {
            // BOSH-INACT-03: every held request is answered now, without payloads, and the
            // session may stay silent for `pause` seconds.
            if pause > st.m.params.maxpause {
                return Err(Condition::PolicyViolation);
            }
            while let Some((rid, slot)) = st.held.pop_front() {
                let body = st.response(rid, Vec::new().as_slice(), now);
                let cache = rid != req.rid;
                st.m.rids.answered(rid, &body, cache, now);
                slot.fill(Answer::Body(body));
            }
            st.idle_since = Instant::now();
            st.inactivity = Some(Duration::from_secs(u64::from(pause)));
            return Ok(());
        }
        // BOSH-HOLD-04: never more than `hold` held; output goes at once (BOSH-HOLD-05).
        while st.held.len() > st.m.params.hold as usize
            || (!st.m.out.is_empty() && !st.held.is_empty() && st.creating.is_none())
        {
            if !st.answer_oldest() {
                break;
            }
        }
        Ok(())
    }

    /// Ends the session now for a protocol error: every waiting request learns it.
    fn fail(&self, st: &mut State, c: Condition) -> Answer {
        tracing::debug!(sid = %st.m.sid, condition = c.as_str(), "BOSH session terminated");
        let answer = st.terminal(c);
        st.end_requests(c);
        st.ended = Some(None);
        st.input_closed = true;
        if let Some(w) = st.conn_waker.take() {
            w.wake();
        }
        answer
    }

    /// The held request `rid` waited `wait` seconds: it is answered (with anything before it
    /// first, in rid order; BOSH-HOLD-03).
    pub fn expire(&self, rid: u64) {
        let mut st = self.st.borrow_mut();
        if st.ended.is_some() || st.moved.is_some() {
            return;
        }
        if let Some(i) = st.early.iter().position(|e| e.req.rid == rid) {
            // Still waiting for an earlier rid after `wait`: the client lost a request. The
            // request stays refused (it was never processed); the client resends it.
            let e = st.early.swap_remove(i);
            st.m.rids.unwaiting(rid);
            let mut body = Vec::new();
            let reply = Reply {
                ty: ReplyType::Error,
                ..Reply::default()
            };
            wire::write_body(&mut body, &reply, b"");
            e.slot.fill(Answer::Body(body));
            return;
        }
        while st.held.iter().any(|(r, _)| *r <= rid) {
            if !st.answer_oldest() {
                break;
            }
        }
    }

    /// The connection task's read: input bytes into `buf`, `Ready(0)` at the end of the
    /// session's input (terminated, or inactive for the period in force: BOSH-INACT-01).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<usize> {
        let mut st = self.st.borrow_mut();
        if !st.input.is_empty() {
            let n = st.input.len().min(buf.len());
            buf[..n].copy_from_slice(&st.input[..n]);
            st.input.drain(..n);
            if st.input.is_empty() {
                give_buffer(std::mem::take(&mut st.input));
            }
            return Poll::Ready(n);
        }
        if st.input_closed || st.moved.is_some() {
            return Poll::Ready(0);
        }
        st.conn_waker = Some(cx.waker().clone());
        // BOSH-INACT-01/02: no request held and none for the inactivity period.
        if st.held.is_empty() && st.early.is_empty() {
            if let Some(period) = st.inactivity {
                let deadline = st.idle_since + period;
                let now = Instant::now();
                if now >= deadline {
                    tracing::debug!(sid = %st.m.sid, "BOSH session inactive");
                    st.timer = None;
                    return Poll::Ready(0);
                }
                let timer = st
                    .timer
                    .get_or_insert_with(|| glommio::timer::Timer::new(deadline - now));
                if std::pin::Pin::new(timer).poll(cx).is_ready() {
                    st.timer = None;
                    // Woken at the deadline: the next poll decides (a request may have come).
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
        }
        st.timer = None;
        Poll::Pending
    }

    /// Cuts what of `unsent` (the connection's queued stream output) forms complete elements
    /// into the session's output and answers the oldest held request with it; returns how
    /// many bytes were taken. Takes nothing while [`OUT_HIGH`] bytes wait for a request.
    pub fn write_output(&self, unsent: &[u8], cx: &mut Context<'_>) -> usize {
        let mut st = self.st.borrow_mut();
        let mut used = 0;
        while st.m.out.len() < OUT_HIGH && st.moved.is_none() {
            let rest = unsent.get(used..).unwrap_or_default();
            if rest.is_empty() {
                break;
            }
            if rest.starts_with(b"<?xml") || rest.starts_with(b"<stream:stream") {
                st.outframer.reset();
            }
            match st.outframer.next(rest) {
                Ok(Some((frame, n))) => {
                    used += n;
                    match frame {
                        Frame::StreamOpen(h) => {
                            if let Some(id) = h.id {
                                st.m.authid = id;
                            }
                        }
                        Frame::Element(raw) => {
                            if raw.starts_with(b"<stream:error") {
                                st.server_closed = true;
                            }
                            if st.m.out.capacity() == 0 {
                                st.m.out = take_buffer();
                            }
                            push_element(&mut st.m.out, raw);
                        }
                        Frame::Whitespace => {}
                        Frame::StreamClose => st.server_closed = true,
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "BOSH output framing failed");
                    used = unsent.len();
                    st.server_closed = true;
                    break;
                }
            }
        }
        if st.m.out.len() >= OUT_HIGH {
            // A request taking the output wakes the connection to cut more.
            st.conn_waker = Some(cx.waker().clone());
        }
        if !st.m.out.is_empty() && !st.server_closed {
            if st.creating.is_some() {
                if !st.m.authid.is_empty() && features_complete(&st.m.out) {
                    st.answer_oldest();
                }
            } else if !st.held.is_empty() {
                st.answer_oldest();
            }
        }
        used
    }

    /// The session's output that no request took yet.
    pub fn pending_output(&self) -> usize {
        self.st.borrow().m.out.len()
    }

    /// The session ends: the held requests get their last answers (the oldest the
    /// termination with what output is left, BOSH-TERM-01, XBOSH-06), and a last answer is
    /// kept for a client that has no request held.
    pub fn end(&self, how: Ending) {
        let mut st = self.st.borrow_mut();
        if st.ended.is_some() || st.moved.is_some() {
            return;
        }
        let now = now_ms();
        let condition = match how {
            Ending::Client | Ending::Silent => None,
            Ending::Server => Some(Condition::RemoteStreamError),
        };
        let out = std::mem::take(&mut st.m.out);
        let mut last = Vec::new();
        wire::write_body(
            &mut last,
            &Reply {
                ty: ReplyType::Terminate(condition),
                ..Reply::default()
            },
            if condition.is_some() { &out } else { b"" },
        );
        let mut kept = None;
        if let Some((_, slot)) = st.held.pop_front() {
            slot.fill(Answer::Body(last));
        } else if how == Ending::Server {
            kept = Some(last);
        }
        while let Some((rid, slot)) = st.held.pop_front() {
            let body = st.response(rid, b"", now);
            slot.fill(Answer::Body(body));
        }
        st.end_requests(Condition::ItemNotFound);
        give_buffer(out);
        st.ended = Some(kept);
        st.timer = None;
    }

    /// How long a session that ended stays in the table for its last answer.
    pub fn farewell_kept(&self) -> Duration {
        FAREWELL_KEPT
    }

    /// The session moves to `shard` (the account's home): held requests are answered now
    /// (empty), waiting ones go there, and what moves is returned.
    pub fn depart(&self, shard: usize) -> Box<BoshMove> {
        let mut st = self.st.borrow_mut();
        let now = now_ms();
        while let Some((rid, slot)) = st.held.pop_front() {
            let body = st.response(rid, b"", now);
            st.m.rids.answered(rid, &body, true, now);
            slot.fill(Answer::Body(body));
        }
        for e in std::mem::take(&mut st.early) {
            st.m.rids.unwaiting(e.req.rid);
            e.slot.fill(Answer::Moved(shard));
        }
        st.moved = Some(shard);
        st.timer = None;
        let placeholder = BoshMove {
            sid: st.m.sid.clone(),
            domain: String::new(),
            params: st.m.params.clone(),
            rids: Rids::new(0, 1),
            keys: Keys::default(),
            secure: st.m.secure,
            authid: String::new(),
            out: Vec::new(),
            prev_empty: None,
            empty_pending: None,
            origin: st.m.origin,
        };
        Box::new(std::mem::replace(&mut st.m, placeholder))
    }

    /// Input the connection has not read (it travels with a moving session).
    pub fn take_input(&self) -> Vec<u8> {
        std::mem::take(&mut self.st.borrow_mut().input)
    }
}

impl State {
    fn new(m: BoshMove, legacy: bool, inactivity: Option<Duration>) -> State {
        State {
            m,
            legacy,
            input: Vec::new(),
            input_closed: false,
            conn_waker: None,
            outframer: Framer::new(Limits {
                max_stanza_bytes: usize::MAX,
                max_depth: 4096,
                max_attrs: 1 << 16,
            }),
            held: VecDeque::new(),
            held_keys: Vec::new(),
            creating: None,
            early: Vec::new(),
            ended: None,
            moved: None,
            idle_since: Instant::now(),
            inactivity,
            timer: None,
            server_closed: false,
        }
    }

    /// Requests not answered yet.
    fn unanswered(&self) -> usize {
        self.held.len() + self.early.len()
    }

    /// A normal response to `rid` carrying `payload`.
    fn response(&self, rid: u64, payload: &[u8], now: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(payload.len() + 160);
        if self.creating == Some(rid) {
            wire::write_creation(
                &mut body,
                &self.m.params,
                &self.m.sid,
                &self.m.domain,
                &self.m.authid,
                rid,
                self.m.secure,
                payload,
            );
            return body;
        }
        let (ack, report) = if self.m.params.ack {
            let ack = self.m.rids.ack_for(rid);
            let threshold = u64::from(self.m.params.wait) * 1000 + 5000;
            (
                ack,
                self.m
                    .rids
                    .report(self.m.rids.client_acked(), now, threshold),
            )
        } else {
            (None, None)
        };
        let reply = Reply {
            ack,
            report,
            ..Reply::default()
        };
        wire::write_body(&mut body, &reply, payload);
        body
    }

    /// Answers the oldest held request with the pending output. Returns false if none is
    /// held.
    fn answer_oldest(&mut self) -> bool {
        let Some((rid, slot)) = self.held.pop_front() else {
            return false;
        };
        let now = now_ms();
        let out = std::mem::take(&mut self.m.out);
        let body = self.response(rid, &out, now);
        if self.creating == Some(rid) {
            self.creating = None;
        }
        // BOSH-POLL-01 counts from the arrival of an empty request answered empty.
        if let Some((empty_rid, arrived)) = self.m.empty_pending {
            if empty_rid == rid {
                self.m.empty_pending = None;
                self.m.prev_empty = out.is_empty().then_some(arrived);
            }
        }
        give_buffer(out);
        self.m.rids.answered(rid, &body, true, now);
        slot.fill(Answer::Body(body));
        if self.held.is_empty() {
            self.idle_since = Instant::now();
        }
        // Room in `out`: the connection may cut more.
        if let Some(w) = self.conn_waker.take() {
            w.wake();
        }
        true
    }

    /// A terminal answer with condition `c` (an HTTP status for a client without `ver`).
    fn terminal(&self, c: Condition) -> Answer {
        terminal(c, self.legacy)
    }

    /// Every request still waiting gets the terminal condition `c`.
    fn end_requests(&mut self, c: Condition) {
        let answer = |st: &State| st.terminal(c);
        for (_, slot) in std::mem::take(&mut self.held) {
            slot.fill(answer(self));
        }
        for e in std::mem::take(&mut self.early) {
            e.slot.fill(answer(self));
        }
    }
}

/// A terminal answer with condition `c`: the binding condition, or the HTTP status for a
/// client without `ver` (`legacy`, §17.1).
pub fn terminal(c: Condition, legacy: bool) -> Answer {
    if legacy {
        return Answer::Status(c.legacy_status());
    }
    let mut body = Vec::new();
    wire::write_body(
        &mut body,
        &Reply {
            ty: ReplyType::Terminate(Some(c)),
            ..Reply::default()
        },
        b"",
    );
    Answer::Body(body)
}

/// The stream header that session creation and a restart stand for.
fn stream_header(to: &str, lang: Option<&str>) -> Vec<u8> {
    let mut h = Vec::with_capacity(160);
    h.extend_from_slice(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='",
    );
    xml::escape_attr(to, &mut h);
    h.push(b'\'');
    if let Some(lang) = lang {
        h.extend_from_slice(b" xml:lang='");
        xml::escape_attr(lang, &mut h);
        h.push(b'\'');
    }
    h.push(b'>');
    h
}

/// Appends one of our elements to the client's output: a stanza without a namespace
/// declaration of its own gets `xmlns='jabber:client'` (XBOSH-08).
fn push_element(out: &mut Vec<u8>, raw: &[u8]) {
    let name_end = raw
        .iter()
        .position(|b| xml_ws(*b) || *b == b'/' || *b == b'>')
        .unwrap_or(raw.len());
    let name = raw.get(1..name_end).unwrap_or_default();
    let prefixed = name.contains(&b':');
    let tag_end = start_tag_end(raw);
    let start_tag = raw.get(..tag_end).unwrap_or(raw);
    let has_default = memchr::memmem::find(start_tag, b" xmlns=").is_some()
        || memchr::memmem::find(start_tag, b"\txmlns=").is_some()
        || memchr::memmem::find(start_tag, b"\nxmlns=").is_some();
    if prefixed || has_default {
        out.extend_from_slice(raw);
        return;
    }
    out.extend_from_slice(&raw[..name_end]);
    out.extend_from_slice(b" xmlns='jabber:client'");
    out.extend_from_slice(&raw[name_end..]);
}

/// The end of an element's start tag (quotes skipped).
fn start_tag_end(raw: &[u8]) -> usize {
    let mut quote = None;
    for (i, b) in raw.iter().enumerate() {
        match quote {
            Some(q) if *b == q => quote = None,
            Some(_) => {}
            None if *b == b'\'' || *b == b'"' => quote = Some(*b),
            None if *b == b'>' => return i + 1,
            None => {}
        }
    }
    raw.len()
}

/// The creation answer waits for the whole `<stream:features>`.
fn features_complete(out: &[u8]) -> bool {
    memchr::memmem::find(out, b"<stream:features").is_some()
}

fn xml_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_names_its_shard() {
        for shard in [0, 1, 7, 255] {
            let sid = new_sid(shard);
            assert_eq!(sid.len(), 34);
            assert_eq!(sid_shard(&sid), Some(shard));
        }
        assert_ne!(new_sid(0), new_sid(0));
        assert_eq!(sid_shard("zz"), None);
        assert_eq!(sid_shard(&"g".repeat(34)), None);
    }

    #[test]
    fn xbosh_08_stanzas_get_the_client_namespace() {
        let mut out = Vec::new();
        push_element(&mut out, b"<message to='a@b'><body>x</body></message>");
        push_element(&mut out, b"<iq type='result' id='1'/>");
        push_element(
            &mut out,
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        );
        push_element(
            &mut out,
            b"<stream:features><bind xmlns='x'/></stream:features>",
        );
        push_element(&mut out, b"<presence from='a' xmlns='jabber:client'/>");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<message xmlns='jabber:client' to='a@b'><body>x</body></message>\
             <iq xmlns='jabber:client' type='result' id='1'/>\
             <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\
             <stream:features><bind xmlns='x'/></stream:features>\
             <presence from='a' xmlns='jabber:client'/>"
        );
        let mut out = Vec::new();
        // A child's xmlns is not the stanza's.
        push_element(&mut out, b"<iq id='1'><q xmlns='y'/></iq>");
        assert!(out.starts_with(b"<iq xmlns='jabber:client' id='1'>"));
        let mut out = Vec::new();
        push_element(&mut out, b"<message id='a>b'><x xmlns='y'/></message>");
        assert!(out.starts_with(b"<message xmlns='jabber:client' id='a>b'>"));
    }

    #[test]
    fn stream_header_escapes() {
        let h = stream_header("a'b", Some("en"));
        let s = String::from_utf8(h).unwrap();
        assert!(s.contains("to='a&apos;b'"), "{s}");
        assert!(s.ends_with("xml:lang='en'>"));
    }
}
