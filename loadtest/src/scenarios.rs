//! The scenarios' per-thread drivers and the main-thread orchestration that phases them,
//! samples CPU and RSS and builds the report.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::framing::{attr, child, child_text, find, name};
use crate::net::{Driver, Id, Net, Target};
use crate::stats::{new_histogram, record_ns};

/// Phases the main thread moves all workers through.
pub mod phase {
    // 0: logging in (the default).
    /// MUC: first occupant of each room joins.
    pub const JOIN_FIRST: u8 = 1;
    /// MUC: the other occupants join.
    pub const JOIN_REST: u8 = 2;
    /// Load phase (warmup, then measured).
    pub const RUN: u8 = 3;
    /// Close everything and return.
    pub const STOP: u8 = 4;
    /// PEP: every user publishes its first item, one user at a time per thread (after the
    /// logins, before [`RUN`]; numerically after [`STOP`] only to keep the others' order).
    pub const CREATE: u8 = 5;
    /// Chat: the load stopped (nothing new is sent), the connections stay open so that the
    /// messages in flight arrive and lost ones can be counted (after [`RUN`], before [`STOP`]).
    pub const DRAIN: u8 = 6;
}

/// State shared by the main thread and the workers.
#[derive(Default)]
pub struct Shared {
    /// Current phase (see [`phase`]).
    pub phase: AtomicU8,
    /// Counting ops and latencies now.
    pub measuring: AtomicBool,
    /// Sessions established.
    pub established: AtomicU64,
    /// Login / connection failures.
    pub failed: AtomicU64,
    /// Scenario progress counter (presence seen, MUC joins, …).
    pub progress: AtomicU64,
    /// Ops counted in the measured window (all threads).
    pub ops: AtomicU64,
    /// First MUC join error condition.
    pub muc_error: Mutex<Option<String>>,
    /// Chat with a blocklist: the first blocking IQ error condition saying the server does
    /// not do XEP-0191 (`service-unavailable`, `feature-not-implemented`).
    pub unsupported: Mutex<Option<String>>,
    /// First failure message, for the user.
    pub first_error: Mutex<Option<String>>,
    /// PEP: publishes answered with a result (all phases).
    pub published: AtomicU64,
    /// PEP: publishes answered with a result while measuring.
    pub published_measured: AtomicU64,
    /// PEP: notifications received from contacts (all phases).
    pub notified: AtomicU64,
    /// PEP: the owners' own notifications (all phases).
    pub own_notified: AtomicU64,
    /// PEP: disco#info (caps) queries answered.
    pub caps_queries: AtomicU64,
    /// Chat: messages sent (all phases).
    pub chat_sent: AtomicU64,
    /// Chat: messages delivered to their receivers (all phases).
    pub chat_delivered: AtomicU64,
    /// Chat: messages bounced back to their senders as errors (all phases).
    pub chat_bounced: AtomicU64,
    /// PEP: users whose first item (which creates the node) was published.
    pub created: AtomicU64,
    /// PEP: notifications of those first items received by contacts.
    pub created_notified: AtomicU64,
    /// PEP: a contact got the same item of the same owner again (not counted as an op).
    pub duplicates: AtomicU64,
    /// PEP: the (owner, contact) pairs over which a notification arrived (all phases).
    pub pep_pairs: Mutex<std::collections::HashSet<(usize, usize)>>,
}

impl Shared {
    fn phase(&self) -> u8 {
        self.phase.load(Relaxed)
    }
    fn fail(&self, msg: String) {
        self.failed.fetch_add(1, Relaxed);
        if let Ok(mut e) = self.first_error.lock() {
            e.get_or_insert(msg);
        }
    }
}

/// What a worker hands back.
pub struct Out {
    /// Latencies recorded in the measured window.
    pub hist: Histogram<u64>,
    /// Error stanzas and failures seen by this worker.
    pub errors: u64,
}

/// Starts logins, either `concurrency` at a time or on a fixed timetable.
pub struct Launcher {
    users: Vec<usize>,
    next: usize,
    concurrency: usize,
    interval_ns: Option<u64>,
    t0: Option<u64>,
}

impl Launcher {
    /// Logs in `users`, at most `concurrency` at once, or one per `interval_ns` if given.
    pub fn new(users: Vec<usize>, concurrency: usize, interval_ns: Option<u64>) -> Self {
        Self {
            users,
            next: 0,
            concurrency: concurrency.max(1),
            interval_ns,
            t0: None,
        }
    }

    fn finished(&self) -> bool {
        self.next >= self.users.len()
    }

    /// Starts due logins; returns when to be called again.
    fn pump(&mut self, net: &mut Net, sh: &Shared, now: u64) -> Option<u64> {
        while !self.finished() {
            let intended = match self.interval_ns {
                Some(iv) => {
                    let t = *self.t0.get_or_insert(now) + self.next as u64 * iv;
                    if t > now {
                        return Some(t);
                    }
                    t
                }
                None => {
                    if net.logging_in >= self.concurrency {
                        return None;
                    }
                    now
                }
            };
            let user = self.users[self.next];
            if let Err(e) = net.connect(user, user, intended) {
                sh.fail(format!("connect: {e}"));
            }
            self.next += 1;
        }
        None
    }
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
    })
}

/// Parses `A.B` decimal pairs.
fn parse_pair(s: &[u8]) -> Option<(u64, u64)> {
    let dot = s.iter().position(|&b| b == b'.')?;
    Some((parse_u64(&s[..dot])?, parse_u64(&s[dot + 1..])?))
}

/// Writes a u64 in decimal without allocating.
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

// ------------------------------------------------------------------------------------ chat

/// Chat settings.
#[derive(Clone)]
pub struct ChatCfg {
    /// Number of sender→receiver pairs.
    pub pairs: usize,
    /// Closed loop: messages in flight per sender.
    pub window: u32,
    /// Open loop: total messages/s.
    pub rate: Option<f64>,
    /// Body size in bytes.
    pub body_bytes: usize,
    /// Blocklist entries each account sets up after login (0: no blocking IQs at all).
    pub blocklist: usize,
    /// Federation: the receivers' domain (they log into the peer server), None: the
    /// senders' own.
    pub peer_domain: Option<String>,
}

/// Most `<item/>`s per blocking IQ.
pub const BLOCK_CHUNK: usize = 200;

/// The blocking namespace (XEP-0191).
const NS_BLOCKING: &str = "urn:xmpp:blocking";

/// The id of blocking setup IQ `k` (0: unblock all; 1..: the blocks of [`BLOCK_CHUNK`]).
const SETUP_ID: &[u8] = b"bl-";

/// The blocking setup IQ `k` of an account: `k == 0` unblocks everything (an empty
/// `<unblock/>`), `k >= 1` blocks entries `(k-1)*BLOCK_CHUNK+1 ..` of `blocked{i}@blocked.example`,
/// at most [`BLOCK_CHUNK`] of the `n` in all. None when there is no IQ `k`.
pub fn blocking_iq(k: usize, n: usize) -> Option<Vec<u8>> {
    let mut iq = format!("<iq type='set' id='bl-{k}'>").into_bytes();
    if k == 0 {
        iq.extend_from_slice(format!("<unblock xmlns='{NS_BLOCKING}'/>").as_bytes());
    } else {
        let first = (k - 1) * BLOCK_CHUNK + 1;
        if first > n {
            return None;
        }
        iq.extend_from_slice(format!("<block xmlns='{NS_BLOCKING}'>").as_bytes());
        for i in first..=(first + BLOCK_CHUNK - 1).min(n) {
            iq.extend_from_slice(format!("<item jid='blocked{i}@blocked.example'/>").as_bytes());
        }
        iq.extend_from_slice(b"</block>");
    }
    iq.extend_from_slice(b"</iq>");
    Some(iq)
}

/// The defined condition of an error stanza (`service-unavailable`, ...), or "error".
pub fn error_condition(s: &[u8]) -> String {
    child(s, b"error")
        .and_then(|e| e.split(|&b| b == b'<').nth(2))
        .filter(|c| !c.starts_with(b"/"))
        .map(|c| String::from_utf8_lossy(name(&[b"<", c].concat())).into_owned())
        .unwrap_or_else(|| "error".into())
}

/// Error conditions by which a server says it does not do the blocking command.
fn means_unsupported(condition: &str) -> bool {
    matches!(condition, "service-unavailable" | "feature-not-implemented")
}

struct PairSt {
    sender: Option<Id>,
    prefix: Vec<u8>,
    inflight: u32,
}

/// Chat driver of one thread.
pub struct Chat {
    sh: Arc<Shared>,
    cfg: ChatCfg,
    threads: usize,
    launch: Launcher,
    pairs: Vec<PairSt>,
    suffix: Vec<u8>,
    started: bool,
    t0: u64,
    k: u64,
    interval_ns: u64,
    hist: Histogram<u64>,
    errors: u64,
}

impl Chat {
    /// Driver for thread `t` of `threads`.
    pub fn new(
        sh: Arc<Shared>,
        cfg: ChatCfg,
        t: usize,
        threads: usize,
        domain: &str,
        prefix: &str,
        conc: usize,
    ) -> Self {
        let p = cfg.pairs;
        // Receivers on a federated peer are addressed in its domain.
        let domain = cfg.peer_domain.as_deref().unwrap_or(domain);
        let mine: Vec<usize> = (t..p).step_by(threads).collect();
        let users: Vec<usize> = mine.iter().flat_map(|&i| [i + 1, i + 1 + p]).collect();
        let pairs = mine
            .iter()
            .map(|&i| PairSt {
                sender: None,
                prefix: format!(
                    "<message to='{prefix}{}@{domain}/lt' type='chat' id='",
                    i + 1 + p
                )
                .into_bytes(),
                inflight: 0,
            })
            .collect();
        let mut suffix = b"'><body>".to_vec();
        suffix.extend(std::iter::repeat_n(b'x', cfg.body_bytes));
        suffix.extend_from_slice(b"</body></message>");
        let per_thread_rate = cfg.rate.map(|r| r / threads as f64).unwrap_or(0.0);
        let interval_ns = if per_thread_rate > 0.0 {
            (1e9 / per_thread_rate) as u64
        } else {
            0
        };
        Self {
            sh,
            cfg,
            threads,
            launch: Launcher::new(users, conc, None),
            pairs,
            suffix,
            started: false,
            t0: 0,
            k: 0,
            interval_ns: interval_ns.max(1),
            hist: new_histogram(),
            errors: 0,
        }
    }

    fn local(&self, user: usize) -> usize {
        ((user - 1) % self.cfg.pairs) / self.threads
    }

    fn send_msg(&mut self, net: &mut Net, li: usize, stamp_ns: u64) {
        let Some(pair) = self.pairs.get_mut(li) else {
            return;
        };
        let Some(id) = pair.sender else { return };
        pair.inflight += 1;
        self.sh.chat_sent.fetch_add(1, Relaxed);
        let (prefix, suffix) = (&pair.prefix, &self.suffix);
        net.send_with(id, |w| {
            w.extend_from_slice(prefix);
            put_u64(w, li as u64);
            w.push(b'.');
            put_u64(w, stamp_ns);
            w.extend_from_slice(suffix);
        });
    }

    /// Results.
    pub fn out(self) -> Out {
        Out {
            hist: self.hist,
            errors: self.errors,
        }
    }

    /// An IQ: the answer to a blocking setup IQ (next one, or this account is done), or a
    /// blocklist push (acknowledged).
    fn iq(&mut self, net: &mut Net, id: Id, s: &[u8]) {
        let ty = attr(s, b"type").unwrap_or_default();
        if ty == b"set" {
            // A blocklist push (XEP-0191 §3.3, §3.4) to this resource: acknowledge it.
            if let Some(iq_id) = attr(s, b"id").filter(|v| !v.contains(&b'\'')) {
                let mut r = b"<iq type='result' id='".to_vec();
                r.extend_from_slice(iq_id);
                r.extend_from_slice(b"'/>");
                net.send(id, &r);
            }
            return;
        }
        let Some(k) = attr(s, b"id")
            .and_then(|v| v.strip_prefix(SETUP_ID))
            .and_then(parse_u64)
        else {
            return;
        };
        let user = net.conn(id).map(|c| c.user).unwrap_or(0);
        match ty {
            b"result" => match blocking_iq(k as usize + 1, self.cfg.blocklist) {
                Some(next) => net.send(id, &next),
                None => {
                    self.sh.progress.fetch_add(1, Relaxed);
                }
            },
            b"error" => {
                self.errors += 1;
                let cond = error_condition(s);
                if means_unsupported(&cond) {
                    if let Ok(mut u) = self.sh.unsupported.lock() {
                        u.get_or_insert(cond);
                    }
                } else {
                    let what = if k == 0 { "unblock all" } else { "block" };
                    self.sh.fail(format!(
                        "blocklist setup of account {user}: IQ bl-{k} ({what}) answered \
                         <{cond}/>: {}",
                        String::from_utf8_lossy(s)
                    ));
                }
            }
            _ => {}
        }
    }
}

impl Driver for Chat {
    fn tick(&mut self, net: &mut Net, now: u64) -> (Option<u64>, bool) {
        let wake = self.launch.pump(net, &self.sh, now);
        match self.sh.phase() {
            phase::STOP => {
                net.close_all();
                return (None, true);
            }
            phase::RUN => {}
            _ => return (wake, false),
        }
        if !self.started {
            self.started = true;
            self.t0 = now;
            if self.cfg.rate.is_none() {
                for li in 0..self.pairs.len() {
                    for _ in 0..self.cfg.window {
                        self.send_msg(net, li, now);
                    }
                }
            }
        }
        if self.cfg.rate.is_some() && !self.pairs.is_empty() {
            let n = self.pairs.len() as u64;
            loop {
                let due = self.t0 + self.k * self.interval_ns;
                if due > now {
                    return (Some(due), false);
                }
                self.send_msg(net, (self.k % n) as usize, due);
                self.k += 1;
            }
        }
        (None, false)
    }

    fn established(&mut self, net: &mut Net, id: Id, _now: u64) {
        self.sh.established.fetch_add(1, Relaxed);
        net.send(id, b"<presence/>");
        if self.cfg.blocklist > 0 {
            if let Some(iq) = blocking_iq(0, self.cfg.blocklist) {
                net.send(id, &iq);
            }
        }
        let Some(user) = net.conn(id).map(|c| c.user) else {
            return;
        };
        if user <= self.cfg.pairs {
            let li = self.local(user);
            if let Some(p) = self.pairs.get_mut(li) {
                p.sender = Some(id);
            }
        }
    }

    fn stanza(&mut self, net: &mut Net, id: Id, s: &[u8], now: u64) {
        if name(s) == b"iq" {
            self.iq(net, id, s);
            return;
        }
        if name(s) != b"message" {
            return;
        }
        let Some((li, stamp)) = attr(s, b"id").and_then(parse_pair) else {
            return;
        };
        let li = li as usize;
        if attr(s, b"type") == Some(b"error") {
            self.errors += 1;
            self.sh.chat_bounced.fetch_add(1, Relaxed);
            if let Ok(mut e) = self.sh.first_error.lock() {
                e.get_or_insert_with(|| {
                    format!("chat: message bounced: {}", String::from_utf8_lossy(s))
                });
            }
        } else if self.sh.measuring.load(Relaxed) {
            self.sh.chat_delivered.fetch_add(1, Relaxed);
            self.sh.ops.fetch_add(1, Relaxed);
            record_ns(&mut self.hist, now.saturating_sub(stamp));
        } else {
            self.sh.chat_delivered.fetch_add(1, Relaxed);
        }
        if let Some(p) = self.pairs.get_mut(li) {
            p.inflight = p.inflight.saturating_sub(1);
        }
        if self.cfg.rate.is_none() && self.sh.phase() == phase::RUN {
            self.send_msg(net, li, now);
        }
    }

    fn closed(&mut self, _net: &mut Net, _id: Id, err: Option<String>) {
        self.sh
            .fail(err.unwrap_or_else(|| "connection closed by server".into()));
        self.errors += 1;
    }
}

// ----------------------------------------------------------------------- login / idle

/// Login / idle driver: logs users in; closes each at once unless `keep`.
pub struct LoginDrv {
    sh: Arc<Shared>,
    launch: Launcher,
    presence: bool,
    keep: bool,
    hist: Histogram<u64>,
    errors: u64,
}

impl LoginDrv {
    /// Driver logging in `users`.
    pub fn new(sh: Arc<Shared>, launch: Launcher, presence: bool, keep: bool) -> Self {
        Self {
            sh,
            launch,
            presence,
            keep,
            hist: new_histogram(),
            errors: 0,
        }
    }

    /// Results.
    pub fn out(self) -> Out {
        Out {
            hist: self.hist,
            errors: self.errors,
        }
    }
}

impl Driver for LoginDrv {
    fn tick(&mut self, net: &mut Net, now: u64) -> (Option<u64>, bool) {
        if self.sh.phase() == phase::STOP {
            net.close_all();
            return (None, true);
        }
        (self.launch.pump(net, &self.sh, now), false)
    }

    fn established(&mut self, net: &mut Net, id: Id, now: u64) {
        if let Some(c) = net.conn(id) {
            record_ns(&mut self.hist, now.saturating_sub(c.t_start_ns));
        }
        self.sh.established.fetch_add(1, Relaxed);
        self.sh.ops.fetch_add(1, Relaxed);
        if self.presence {
            net.send(id, b"<presence/>");
        }
        if !self.keep {
            net.close_gracefully(id);
        }
    }

    fn stanza(&mut self, _net: &mut Net, _id: Id, _s: &[u8], _now: u64) {}

    fn closed(&mut self, _net: &mut Net, _id: Id, err: Option<String>) {
        self.errors += 1;
        self.sh
            .fail(err.unwrap_or_else(|| "connection closed by server".into()));
    }
}

// --------------------------------------------------------------------------- presence

/// Presence driver: initial presence, then `rounds` broadcasts per user in the RUN phase.
pub struct PresenceDrv {
    sh: Arc<Shared>,
    prefix: String,
    launch: Launcher,
    rounds: u32,
    ids: Vec<Id>,
    sent: bool,
    hist: Histogram<u64>,
    errors: u64,
}

impl PresenceDrv {
    /// Driver logging in `launch`'s users.
    pub fn new(sh: Arc<Shared>, launch: Launcher, rounds: u32, prefix: String) -> Self {
        Self {
            sh,
            prefix,
            launch,
            rounds,
            ids: Vec::new(),
            sent: false,
            hist: new_histogram(),
            errors: 0,
        }
    }

    /// Results.
    pub fn out(self) -> Out {
        Out {
            hist: self.hist,
            errors: self.errors,
        }
    }
}

impl Driver for PresenceDrv {
    fn tick(&mut self, net: &mut Net, now: u64) -> (Option<u64>, bool) {
        match self.sh.phase() {
            phase::STOP => {
                net.close_all();
                return (None, true);
            }
            phase::RUN if !self.sent => {
                self.sent = true;
                for &id in &self.ids {
                    for k in 0..self.rounds {
                        net.send_with(id, |w| {
                            w.extend_from_slice(b"<presence><status>r");
                            put_u64(w, u64::from(k));
                            w.push(b'.');
                            put_u64(w, now);
                            w.extend_from_slice(b"</status></presence>");
                        });
                    }
                }
            }
            _ => {}
        }
        (self.launch.pump(net, &self.sh, now), false)
    }

    fn established(&mut self, net: &mut Net, id: Id, _now: u64) {
        self.sh.established.fetch_add(1, Relaxed);
        self.ids.push(id);
        net.send(id, b"<presence/>");
    }

    fn stanza(&mut self, net: &mut Net, id: Id, s: &[u8], now: u64) {
        if name(s) != b"presence" {
            return;
        }
        // A user's own presence reflected to its session is not a delivery to a contact.
        let own = net.conn(id).map(|c| c.user as u64);
        let from_user = attr(s, b"from")
            .and_then(|f| f.strip_prefix(self.prefix.as_bytes()))
            .and_then(|f| f.split(|&b| b == b'@').next())
            .and_then(parse_u64);
        if from_user.is_some() && from_user == own {
            return;
        }
        if attr(s, b"type") == Some(b"error") {
            self.errors += 1;
            return;
        }
        self.sh.progress.fetch_add(1, Relaxed);
        let Some(st) = child_text(s, b"status") else {
            return;
        };
        let Some((_, stamp)) = st.strip_prefix(b"r").and_then(parse_pair) else {
            return;
        };
        if self.sh.measuring.load(Relaxed) {
            self.sh.ops.fetch_add(1, Relaxed);
            record_ns(&mut self.hist, now.saturating_sub(stamp));
        }
    }

    fn closed(&mut self, _net: &mut Net, _id: Id, err: Option<String>) {
        self.errors += 1;
        self.sh
            .fail(err.unwrap_or_else(|| "connection closed by server".into()));
    }
}

// -------------------------------------------------------------------------------- muc

/// MUC settings.
#[derive(Clone)]
pub struct MucCfg {
    /// Occupants per room.
    pub occupants: usize,
    /// Saturation: messages per occupant (0: no limit, the main thread ends the run).
    pub rounds: u32,
    /// Saturation: own messages in flight per occupant (its reflected copy releases the next).
    pub window: u32,
    /// Saturation: messages in flight per room and thread, the room's occupants taking turns
    /// (0: no room limit, only `window`).
    pub room_window: u32,
    /// Fixed rate: room messages per second over all rooms and threads.
    pub rate: Option<f64>,
    /// Sessions over all threads (a thread's share of `rate` is its share of them).
    pub users: usize,
    /// MUC service JID.
    pub service: String,
}

/// One occupant's session.
struct MucSess {
    id: Id,
    room: usize,
    occ: usize,
    /// `/nick{occ+1}`: the end of the `from` of this occupant's own reflected messages.
    nick: Vec<u8>,
    /// `<message to='room{n}@service' type='groupchat'><body>t`: the stamp follows.
    head: Vec<u8>,
    /// Own messages sent and not yet reflected (saturation window).
    inflight: u32,
    /// Own messages sent in the run phase.
    sent: u64,
}

/// A room's occupants on this thread, for the saturation window.
#[derive(Default)]
struct MucRoom {
    /// Indices into the driver's sessions.
    members: Vec<usize>,
    /// Whose turn is next (index into `members`).
    next: usize,
    /// Messages of these members in flight.
    inflight: u32,
}

/// MUC driver: joins rooms in two waves (creators first), then sends groupchat messages:
/// saturation (every occupant keeps at most `window` of its own messages in flight, its own
/// reflected copy being the acknowledgement, until `rounds` are sent) or a fixed rate (a
/// timetable over the occupants ordered room by room, so that every room and every occupant
/// sends at the same rate; latency from the intended send time).
pub struct MucDrv {
    sh: Arc<Shared>,
    cfg: MucCfg,
    launch: Launcher,
    sessions: Vec<MucSess>,
    /// Saturation: this thread's occupants by room (indexed by room number).
    rooms: Vec<MucRoom>,
    /// Connection id → index in `sessions` + 1 (0: none).
    by_id: Vec<usize>,
    joined_wave: u8,
    started: bool,
    /// Fixed rate: send order (indices into `sessions`), timetable start and next send.
    order: Vec<usize>,
    t0: u64,
    k: u64,
    /// Fixed rate: ns between two sends of this thread.
    interval_ns: f64,
    hist: Histogram<u64>,
    errors: u64,
}

impl MucDrv {
    /// Driver logging in `launch`'s users (user = room*occupants + occupant + 1).
    pub fn new(sh: Arc<Shared>, cfg: MucCfg, launch: Launcher) -> Self {
        Self {
            sh,
            cfg,
            launch,
            sessions: Vec::new(),
            rooms: Vec::new(),
            by_id: Vec::new(),
            joined_wave: 0,
            started: false,
            order: Vec::new(),
            t0: 0,
            k: 0,
            interval_ns: 0.0,
            hist: new_histogram(),
            errors: 0,
        }
    }

    /// Results.
    pub fn out(self) -> Out {
        Out {
            hist: self.hist,
            errors: self.errors,
        }
    }

    fn join(&self, net: &mut Net, first: bool) {
        for s in &self.sessions {
            if (s.occ == 0) == first {
                let j = format!(
                    "<presence to='room{}@{}/nick{}'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
                    s.room + 1,
                    self.cfg.service,
                    s.occ + 1
                );
                net.send(s.id, j.as_bytes());
            }
        }
    }

    /// Sends one groupchat message from session `i`, stamped `stamp_ns`.
    fn send_msg(&mut self, net: &mut Net, i: usize, stamp_ns: u64) {
        let Some(s) = self.sessions.get_mut(i) else {
            return;
        };
        s.inflight += 1;
        s.sent += 1;
        if let Some(r) = self.rooms.get_mut(s.room) {
            r.inflight += 1;
        }
        let head = &s.head;
        net.send_with(s.id, |w| {
            w.extend_from_slice(head);
            put_u64(w, stamp_ns);
            w.extend_from_slice(b"</body></message>");
        });
    }

    /// Saturation: whether session `i` may send another message now.
    fn may_send(&self, i: usize) -> bool {
        self.sessions.get(i).is_some_and(|s| {
            s.inflight < self.cfg.window
                && (self.cfg.rounds == 0 || s.sent < u64::from(self.cfg.rounds))
        })
    }

    /// Saturation: one of session `i`'s own messages came back (or bounced): release its
    /// slot and let the room's next occupants send as far as the windows allow.
    fn acked(&mut self, net: &mut Net, i: usize, now: u64) {
        let Some(s) = self.sessions.get_mut(i) else {
            return;
        };
        s.inflight = s.inflight.saturating_sub(1);
        let room = s.room;
        if let Some(r) = self.rooms.get_mut(room) {
            r.inflight = r.inflight.saturating_sub(1);
        }
        if self.cfg.rate.is_none() && self.sh.phase() == phase::RUN {
            self.fill(net, room, now);
        }
    }

    /// Saturation: sends from `room`'s occupants in turn until the room's window is full or
    /// none of them may send.
    fn fill(&mut self, net: &mut Net, room: usize, now: u64) {
        let cap = match self.cfg.room_window {
            0 => u32::MAX,
            w => w,
        };
        loop {
            let Some(r) = self.rooms.get(room) else {
                return;
            };
            if r.inflight >= cap || r.members.is_empty() {
                return;
            }
            let n = r.members.len();
            let Some(k) = (0..n)
                .map(|d| (r.next + d) % n)
                .find(|&k| self.may_send(r.members[k]))
            else {
                return;
            };
            let i = r.members[k];
            if let Some(r) = self.rooms.get_mut(room) {
                r.next = (k + 1) % n;
            }
            self.send_msg(net, i, now);
        }
    }

    /// The first tick of the run phase.
    fn start(&mut self, net: &mut Net, now: u64) {
        self.started = true;
        self.t0 = now;
        match self.cfg.rate {
            Some(rate) => {
                // Room by room within each occupant rank: consecutive sends go to different
                // rooms, and every occupant of a room takes its turn.
                let mut order: Vec<usize> = (0..self.sessions.len()).collect();
                order.sort_by_key(|&i| (self.sessions[i].occ, self.sessions[i].room));
                self.order = order;
                let share = self.sessions.len() as f64 / self.cfg.users.max(1) as f64;
                let thread_rate = rate * share;
                self.interval_ns = if thread_rate > 0.0 {
                    1e9 / thread_rate
                } else {
                    f64::INFINITY
                };
            }
            None => {
                for room in 0..self.rooms.len() {
                    self.fill(net, room, now);
                }
            }
        }
    }

    /// Fixed rate: sends everything due; returns when the next send is due.
    fn send_due(&mut self, net: &mut Net, now: u64) -> Option<u64> {
        if self.order.is_empty() || !self.interval_ns.is_finite() {
            return None;
        }
        let n = self.order.len() as u64;
        loop {
            let due = self.t0 + (self.k as f64 * self.interval_ns) as u64;
            if due > now {
                return Some(due);
            }
            let i = self.order[(self.k % n) as usize];
            self.send_msg(net, i, due);
            self.k += 1;
        }
    }

    /// Records the session `id` of user `u` (room and occupant rank follow from `u`).
    fn add_session(&mut self, id: Id, u: usize) {
        let (room, occ) = ((u - 1) / self.cfg.occupants, (u - 1) % self.cfg.occupants);
        if self.by_id.len() <= id {
            self.by_id.resize(id + 1, 0);
        }
        self.sessions.push(MucSess {
            id,
            room,
            occ,
            nick: format!("/nick{}", occ + 1).into_bytes(),
            head: format!(
                "<message to='room{}@{}' type='groupchat'><body>t",
                room + 1,
                self.cfg.service
            )
            .into_bytes(),
            inflight: 0,
            sent: 0,
        });
        self.by_id[id] = self.sessions.len();
        if self.rooms.len() <= room {
            self.rooms.resize_with(room + 1, MucRoom::default);
        }
        self.rooms[room].members.push(self.sessions.len() - 1);
    }

    fn session_of(&self, id: Id) -> Option<usize> {
        self.by_id.get(id).and_then(|&i| i.checked_sub(1))
    }
}

/// The earlier of two optional wake-up times.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Driver for MucDrv {
    fn tick(&mut self, net: &mut Net, now: u64) -> (Option<u64>, bool) {
        let ph = self.sh.phase();
        if ph == phase::STOP {
            net.close_all();
            return (None, true);
        }
        if ph >= phase::JOIN_FIRST && self.joined_wave < 1 {
            self.joined_wave = 1;
            self.join(net, true);
        }
        if ph >= phase::JOIN_REST && self.joined_wave < 2 {
            self.joined_wave = 2;
            self.join(net, false);
        }
        let mut wake = None;
        if ph == phase::RUN {
            if !self.started {
                self.start(net, now);
            }
            if self.cfg.rate.is_some() {
                wake = self.send_due(net, now);
            }
        }
        (earliest(wake, self.launch.pump(net, &self.sh, now)), false)
    }

    fn established(&mut self, net: &mut Net, id: Id, _now: u64) {
        self.sh.established.fetch_add(1, Relaxed);
        if let Some(u) = net.conn(id).map(|c| c.user) {
            self.add_session(id, u);
        }
    }

    fn stanza(&mut self, net: &mut Net, id: Id, s: &[u8], now: u64) {
        match name(s) {
            b"presence" => {
                let from = attr(s, b"from").unwrap_or_default();
                if find(from, self.cfg.service.as_bytes()).is_none() {
                    return;
                }
                if attr(s, b"type") == Some(b"error") {
                    let cond = child(s, b"error")
                        .and_then(|e| e.get(1..))
                        .and_then(|e| e.split(|&b| b == b'<').nth(1))
                        .map(|c| String::from_utf8_lossy(name(&[b"<", c].concat())).into_owned())
                        .unwrap_or_else(|| "error".into());
                    if let Ok(mut m) = self.sh.muc_error.lock() {
                        m.get_or_insert(cond);
                    }
                    self.errors += 1;
                    return;
                }
                if find(s, b"code='110'").is_some() || find(s, b"code=\"110\"").is_some() {
                    self.sh.progress.fetch_add(1, Relaxed);
                    if find(s, b"code='201'").is_some() || find(s, b"code=\"201\"").is_some() {
                        let room = from.split(|&b| b == b'/').next().unwrap_or_default();
                        let mut iq = b"<iq type='set' id='cfg' to='".to_vec();
                        iq.extend_from_slice(room);
                        iq.extend_from_slice(
                            b"'><query xmlns='http://jabber.org/protocol/muc#owner'>\
                              <x xmlns='jabber:x:data' type='submit'/></query></iq>",
                        );
                        net.send(id, &iq);
                    }
                }
            }
            b"message" => match attr(s, b"type") {
                Some(b"groupchat") => {
                    let Some(stamp) = child_text(s, b"body")
                        .and_then(|b| b.strip_prefix(b"t"))
                        .and_then(parse_u64)
                    else {
                        return;
                    };
                    if child(s, b"delay").is_some() {
                        return;
                    }
                    if self.sh.measuring.load(Relaxed) {
                        self.sh.ops.fetch_add(1, Relaxed);
                        record_ns(&mut self.hist, now.saturating_sub(stamp));
                    }
                    let Some(i) = self.session_of(id) else {
                        return;
                    };
                    let from = attr(s, b"from").unwrap_or_default();
                    if from.ends_with(&self.sessions[i].nick) {
                        self.acked(net, i, now);
                    }
                }
                Some(b"error") => {
                    self.errors += 1;
                    // A bounced groupchat message will not come back: release its slot.
                    if let Some(i) = self.session_of(id) {
                        self.acked(net, i, now);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn closed(&mut self, _net: &mut Net, _id: Id, err: Option<String>) {
        self.errors += 1;
        self.sh
            .fail(err.unwrap_or_else(|| "connection closed by server".into()));
    }
}

// -------------------------------------------------------------------------------- pep

/// PEP settings.
#[derive(Clone)]
pub struct PepCfg {
    /// Sessions over all threads: users 1..=users of the provisioned ring (a thread's share of
    /// `rate` is its share of them).
    pub users: usize,
    /// Provisioned contacts per user (the ring of [`crate::provision::contacts`]).
    pub contacts: usize,
    /// Saturation: publishes per user (0: no limit, the main thread ends the run).
    pub rounds: u32,
    /// Saturation: publishes in flight per user; the publish's IQ result releases the next.
    pub window: u32,
    /// Fixed rate: publishes per second over all users and threads.
    pub rate: Option<f64>,
    /// Account prefix: notifications come from `{prefix}{n}@domain`.
    pub prefix: String,
}

/// One user's session.
struct PepSess {
    id: Id,
    /// The account's number.
    user: usize,
    /// Publishes sent and not yet answered.
    inflight: u32,
    /// Publishes sent in the run phase.
    sent: u64,
}

/// The id of publish IQs: `pub{k}`.
const PUBLISH_ID: &[u8] = b"pub";
/// The id of the publish IQ that creates the node.
const CREATE_ID: &[u8] = b"create";

/// The item id prefix of the first items (`c{ns}`): their notifications are not ops.
const CREATE_ITEM: u8 = b'c';

/// A tune publish IQ with id `iq_id`, item `{k}.{stamp_ns}` (or `c{stamp_ns}` for the
/// node-creating first item, `k` None).
fn publish_iq(w: &mut Vec<u8>, iq_id: &[u8], k: Option<u64>, stamp_ns: u64) {
    w.extend_from_slice(b"<iq type='set' id='");
    w.extend_from_slice(iq_id);
    w.extend_from_slice(b"'><pubsub xmlns='");
    w.extend_from_slice(crate::caps::NS_PUBSUB.as_bytes());
    w.extend_from_slice(b"'><publish node='");
    w.extend_from_slice(crate::caps::NS_TUNE.as_bytes());
    w.extend_from_slice(b"'><item id='");
    match k {
        Some(k) => {
            put_u64(w, k);
            w.push(b'.');
        }
        None => w.push(CREATE_ITEM),
    }
    put_u64(w, stamp_ns);
    w.extend_from_slice(b"'><tune xmlns='");
    w.extend_from_slice(crate::caps::NS_TUNE.as_bytes());
    w.extend_from_slice(b"'><artist>xmppd-loadtest</artist><title>t");
    put_u64(w, k.unwrap_or(0));
    w.extend_from_slice(b"</title><length>180</length></tune></item></publish></pubsub></iq>");
}

/// PEP driver: every session sends initial presence with XEP-0115 caps asking for tune
/// notifications (`+notify`) and answers every disco#info query; in the run phase every
/// user publishes tune items to its PEP service, at saturation (at most `window` publishes in
/// flight, the IQ result releasing the next, `rounds` each or unbounded) or on a fixed
/// timetable (`rate` publishes/s in all, user by user). Ops are tune notifications received
/// from a roster contact (not the owner's own copies); latency runs from the send time
/// stamped into the item id (`{k}.{ns}`), the intended one with `rate`.
pub struct PepDrv {
    sh: Arc<Shared>,
    cfg: PepCfg,
    /// The first wave of logins (at once).
    launch: Launcher,
    /// The second wave, from [`phase::JOIN_REST`] on.
    launch_rest: Launcher,
    presence: Vec<u8>,
    sessions: Vec<PepSess>,
    /// Connection id → index in `sessions` + 1 (0: none).
    by_id: Vec<usize>,
    started: bool,
    t0: u64,
    k: u64,
    /// Fixed rate: ns between two publishes of this thread.
    interval_ns: f64,
    /// (owner, contact) pairs seen by this thread (also put in [`Shared::pep_pairs`]), with
    /// the item id of the last notification over each.
    pairs: std::collections::HashMap<(usize, usize), Vec<u8>>,
    /// Phase CREATE: sessions whose node is created, and whether one is being created.
    created: usize,
    creating: bool,
    hist: Histogram<u64>,
    errors: u64,
}

impl PepDrv {
    /// Driver logging in `launch`'s users, then, from [`phase::JOIN_REST`] on, `rest`'s.
    pub fn new(sh: Arc<Shared>, cfg: PepCfg, launch: Launcher, rest: Launcher) -> Self {
        Self {
            sh,
            cfg,
            launch,
            launch_rest: rest,
            presence: crate::caps::presence(),
            sessions: Vec::new(),
            by_id: Vec::new(),
            started: false,
            t0: 0,
            k: 0,
            interval_ns: 0.0,
            pairs: Default::default(),
            created: 0,
            creating: false,
            hist: new_histogram(),
            errors: 0,
        }
    }

    /// Results.
    pub fn out(self) -> Out {
        Out {
            hist: self.hist,
            errors: self.errors,
        }
    }

    fn add_session(&mut self, id: Id, user: usize) {
        if self.by_id.len() <= id {
            self.by_id.resize(id + 1, 0);
        }
        self.sessions.push(PepSess {
            id,
            user,
            inflight: 0,
            sent: 0,
        });
        self.by_id[id] = self.sessions.len();
    }

    fn session_of(&self, id: Id) -> Option<usize> {
        self.by_id.get(id).and_then(|&i| i.checked_sub(1))
    }

    /// Publishes one tune item from session `i`, stamped `stamp_ns`.
    fn publish(&mut self, net: &mut Net, i: usize, stamp_ns: u64) {
        let Some(s) = self.sessions.get_mut(i) else {
            return;
        };
        let k = s.sent;
        s.sent += 1;
        s.inflight += 1;
        net.send_with(s.id, |w| {
            let mut iq_id = PUBLISH_ID.to_vec();
            put_u64(&mut iq_id, k);
            publish_iq(w, &iq_id, Some(k), stamp_ns);
        });
    }

    /// Phase CREATE: publishes the first item of this thread's next user (the node is
    /// auto-created, XEP-0163 §3), one at a time: creating nodes concurrently is what some
    /// servers cannot do (ejabberd 23.01's Mnesia transactions on the node index deadlock).
    fn create_next(&mut self, net: &mut Net, now: u64) {
        if self.creating {
            return;
        }
        let Some(s) = self.sessions.get(self.created) else {
            return;
        };
        self.creating = true;
        net.send_with(s.id, |w| publish_iq(w, CREATE_ID, None, now));
    }

    /// Saturation: whether session `i` may publish another item now.
    fn may_publish(&self, i: usize) -> bool {
        self.sessions.get(i).is_some_and(|s| {
            s.inflight < self.cfg.window
                && (self.cfg.rounds == 0 || s.sent < u64::from(self.cfg.rounds))
        })
    }

    /// The first tick of the run phase.
    fn start(&mut self, net: &mut Net, now: u64) {
        self.started = true;
        self.t0 = now;
        match self.cfg.rate {
            Some(rate) => {
                let share = self.sessions.len() as f64 / self.cfg.users.max(1) as f64;
                let thread_rate = rate * share;
                self.interval_ns = if thread_rate > 0.0 {
                    1e9 / thread_rate
                } else {
                    f64::INFINITY
                };
            }
            None => {
                for i in 0..self.sessions.len() {
                    while self.may_publish(i) {
                        self.publish(net, i, now);
                    }
                }
            }
        }
    }

    /// Fixed rate: publishes everything due, user by user; returns when the next is due.
    fn publish_due(&mut self, net: &mut Net, now: u64) -> Option<u64> {
        if self.sessions.is_empty() || !self.interval_ns.is_finite() {
            return None;
        }
        let n = self.sessions.len() as u64;
        loop {
            let due = self.t0 + (self.k as f64 * self.interval_ns) as u64;
            if due > now {
                return Some(due);
            }
            self.publish(net, (self.k % n) as usize, due);
            self.k += 1;
        }
    }

    /// The user number of a bare JID `{prefix}{n}@…`.
    fn user_of(&self, jid: &[u8]) -> Option<usize> {
        jid.strip_prefix(self.cfg.prefix.as_bytes())
            .and_then(|j| j.split(|&b| b == b'@').next())
            .and_then(parse_u64)
            .map(|u| u as usize)
    }

    /// An IQ: a caps query (answered), another request (refused), or the answer to a publish.
    fn iq(&mut self, net: &mut Net, id: Id, s: &[u8], now: u64) {
        if let Some(answer) = crate::caps::disco_info_answer(s) {
            net.send(id, &answer);
            self.sh.caps_queries.fetch_add(1, Relaxed);
            self.sh.progress.fetch_add(1, Relaxed);
            return;
        }
        if let Some(refusal) = crate::caps::iq_unavailable(s) {
            net.send(id, &refusal);
            return;
        }
        if attr(s, b"id") == Some(CREATE_ID) && self.creating {
            self.creating = false;
            if attr(s, b"type") == Some(b"result") {
                self.created += 1;
                self.sh.created.fetch_add(1, Relaxed);
                self.sh.published.fetch_add(1, Relaxed);
                self.create_next(net, now);
            } else {
                self.publish_error(s, "the first publish (creating the node)");
            }
            return;
        }
        if !attr(s, b"id").is_some_and(|v| v.starts_with(PUBLISH_ID)) {
            return;
        }
        let Some(i) = self.session_of(id) else {
            return;
        };
        if let Some(sess) = self.sessions.get_mut(i) {
            sess.inflight = sess.inflight.saturating_sub(1);
        }
        match attr(s, b"type") {
            Some(b"result") => {
                self.sh.published.fetch_add(1, Relaxed);
                if self.sh.measuring.load(Relaxed) {
                    self.sh.published_measured.fetch_add(1, Relaxed);
                }
                if self.cfg.rate.is_none() && self.sh.phase() == phase::RUN && self.may_publish(i) {
                    self.publish(net, i, now);
                }
            }
            Some(b"error") => self.publish_error(s, "a publish"),
            _ => {}
        }
    }

    /// A publish was answered with an error: the scenario stops there, and the main thread
    /// reports the server as not supporting PEP publishing, naming the condition.
    fn publish_error(&mut self, s: &[u8], what: &str) {
        self.errors += 1;
        let text = String::from_utf8_lossy(&s[..s.len().min(400)]).into_owned();
        if let Ok(mut u) = self.sh.unsupported.lock() {
            u.get_or_insert(format!(
                "{what} was answered <{}/>: {text}",
                error_condition(s)
            ));
        }
    }

    /// A message: a tune notification from a contact (an op), the owner's own copy, or else.
    fn message(&mut self, id: Id, s: &[u8], now: u64) {
        let Some(n) = crate::caps::tune_notification(s) else {
            if attr(s, b"type") == Some(b"error") {
                self.errors += 1;
            }
            return;
        };
        let me = self
            .session_of(id)
            .and_then(|i| self.sessions.get(i))
            .map(|s| s.user);
        let (Some(owner), Some(me)) = (self.user_of(n.from), me) else {
            return;
        };
        if owner == me {
            self.sh.own_notified.fetch_add(1, Relaxed);
            return;
        }
        if !crate::provision::is_contact(owner, me, self.cfg.users, self.cfg.contacts) {
            return;
        }
        match self.pairs.entry((owner, me)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(n.item_id.to_vec());
                if let Ok(mut p) = self.sh.pep_pairs.lock() {
                    p.insert((owner, me));
                }
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get() == n.item_id {
                    // The same item again (a server sending to the bare and the full JID).
                    self.sh.duplicates.fetch_add(1, Relaxed);
                    return;
                }
                e.get_mut().clear();
                e.get_mut().extend_from_slice(n.item_id);
            }
        }
        if n.item_id.first() == Some(&CREATE_ITEM) {
            self.sh.created_notified.fetch_add(1, Relaxed);
            return;
        }
        self.sh.notified.fetch_add(1, Relaxed);
        if self.sh.measuring.load(Relaxed) {
            self.sh.ops.fetch_add(1, Relaxed);
            if let Some((_, stamp)) = parse_pair(n.item_id) {
                record_ns(&mut self.hist, now.saturating_sub(stamp));
            }
        }
    }
}

impl Driver for PepDrv {
    fn tick(&mut self, net: &mut Net, now: u64) -> (Option<u64>, bool) {
        let ph = self.sh.phase();
        if ph == phase::STOP {
            net.close_all();
            return (None, true);
        }
        let mut wake = None;
        if ph == phase::CREATE {
            self.create_next(net, now);
        }
        if ph == phase::RUN {
            if !self.started {
                self.start(net, now);
            }
            if self.cfg.rate.is_some() {
                wake = self.publish_due(net, now);
            }
        }
        wake = earliest(wake, self.launch.pump(net, &self.sh, now));
        if ph >= phase::JOIN_REST {
            wake = earliest(wake, self.launch_rest.pump(net, &self.sh, now));
        }
        (wake, false)
    }

    fn established(&mut self, net: &mut Net, id: Id, _now: u64) {
        self.sh.established.fetch_add(1, Relaxed);
        if let Some(u) = net.conn(id).map(|c| c.user) {
            self.add_session(id, u);
        }
        net.send(id, &self.presence);
    }

    fn stanza(&mut self, net: &mut Net, id: Id, s: &[u8], now: u64) {
        match name(s) {
            b"iq" => self.iq(net, id, s, now),
            b"message" => self.message(id, s, now),
            b"presence" => {
                if attr(s, b"type") == Some(b"error") {
                    self.errors += 1;
                } else {
                    self.sh.progress.fetch_add(1, Relaxed);
                }
            }
            _ => {}
        }
    }

    fn closed(&mut self, _net: &mut Net, _id: Id, err: Option<String>) {
        self.errors += 1;
        self.sh
            .fail(err.unwrap_or_else(|| "connection closed by server".into()));
    }
}

// ---------------------------------------------------------------------- orchestration

/// Spawns `threads` workers; `make(t)` builds thread `t`'s driver, `fin` extracts its results.
pub fn spawn<D, F, G>(
    threads: usize,
    target: &Target,
    epoch: Instant,
    make: F,
    fin: G,
) -> Vec<std::thread::JoinHandle<Out>>
where
    D: Driver + 'static,
    F: Fn(usize) -> D + Send + Sync + 'static,
    G: Fn(D) -> Out + Send + Sync + Copy + 'static,
{
    let make = Arc::new(make);
    (0..threads)
        .map(|t| {
            let target = target.clone();
            let make = make.clone();
            std::thread::Builder::new()
                .name(format!("lt-{t}"))
                .spawn(move || {
                    let mut d = make(t);
                    match Net::new(
                        target,
                        epoch,
                        0x9e37_79b9_7f4a_7c15 ^ (t as u64) << 32 ^ seed(),
                    ) {
                        Ok(mut net) => net.run(&mut d),
                        Err(e) => eprintln!("worker {t}: {e}"),
                    }
                    fin(d)
                })
                .unwrap_or_else(|e| panic!("spawn worker: {e}"))
        })
        .collect()
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_le_bytes(b) ^ std::process::id() as u64
}

/// Joins the workers and merges their results.
pub fn join(handles: Vec<std::thread::JoinHandle<Out>>) -> Out {
    let mut all = Out {
        hist: new_histogram(),
        errors: 0,
    };
    for h in handles {
        if let Ok(o) = h.join() {
            let _ = all.hist.add(&o.hist);
            all.errors += o.errors;
        }
    }
    all
}

/// Polls `cond` every 10 ms until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Instant, mut cond: impl FnMut() -> bool) -> bool {
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sleeps until `d` passed or `deadline`, whichever first.
pub fn sleep_bounded(d: Duration, deadline: Instant) {
    let until = (Instant::now() + d).min(deadline);
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}

/// Prints a progress line on stderr.
pub fn progress(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "[xmppd-loadtest] {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_codec_roundtrip() {
        let mut v = Vec::new();
        put_u64(&mut v, 0);
        v.push(b'.');
        put_u64(&mut v, u64::MAX);
        assert_eq!(v, b"0.18446744073709551615");
        assert_eq!(parse_pair(&v), Some((0, u64::MAX)));
        assert_eq!(parse_pair(b"12.x"), None);
        assert_eq!(parse_u64(b""), None);
    }

    #[test]
    fn blocking_setup_iqs() {
        let text = |k, n| blocking_iq(k, n).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            text(0, 3).unwrap(),
            "<iq type='set' id='bl-0'><unblock xmlns='urn:xmpp:blocking'/></iq>"
        );
        assert_eq!(
            text(1, 2).unwrap(),
            "<iq type='set' id='bl-1'><block xmlns='urn:xmpp:blocking'>\
             <item jid='blocked1@blocked.example'/><item jid='blocked2@blocked.example'/>\
             </block></iq>"
        );
        assert_eq!(text(2, 2), None);
        // 450 entries: 200 + 200 + 50, then nothing.
        let items = |k| text(k, 450).map(|t| t.matches("<item ").count());
        assert_eq!(
            (items(1), items(2), items(3), items(4)),
            (Some(200), Some(200), Some(50), None)
        );
        assert!(
            text(3, 450).unwrap().contains("blocked401@")
                && text(3, 450).unwrap().contains("blocked450@")
        );
    }

    /// A MUC driver with sessions for users 1..=rooms*occupants (connection id = user - 1)
    /// and a loop without connections: sends are counted by the driver, not written.
    fn muc_driver(
        rooms: usize,
        occupants: usize,
        window: u32,
        room_window: u32,
        rounds: u32,
        rate: Option<f64>,
    ) -> (MucDrv, Net) {
        let cfg = MucCfg {
            occupants,
            rounds,
            window,
            room_window,
            rate,
            users: rooms * occupants,
            service: "conference.localhost".into(),
        };
        let sh = Arc::new(Shared::default());
        let mut d = MucDrv::new(sh, cfg, Launcher::new(Vec::new(), 1, None));
        for u in 1..=rooms * occupants {
            d.add_session(u - 1, u);
        }
        let target = Target {
            host: std::net::Ipv4Addr::LOCALHOST,
            port: 1,
            src_ips: 1,
            login: crate::login::LoginConfig {
                domain: "localhost".into(),
                starttls: false,
                mech: crate::login::Mech::Plain,
            },
            prefix: "user".into(),
            password: "pass".into(),
            tls: crate::net::tls_config(),
            spin: false,
            transport: crate::net::Transport::Tcp,
            peer: None,
        };
        let net = Net::new(target, Instant::now(), 1).expect("epoll");
        (d, net)
    }

    /// A loop without connections (sends to unknown ids are dropped).
    fn no_net() -> Net {
        let target = Target {
            host: std::net::Ipv4Addr::LOCALHOST,
            port: 1,
            src_ips: 1,
            login: crate::login::LoginConfig {
                domain: "localhost".into(),
                starttls: false,
                mech: crate::login::Mech::Plain,
            },
            prefix: "p".into(),
            password: "pass".into(),
            tls: crate::net::tls_config(),
            spin: false,
            transport: crate::net::Transport::Tcp,
            peer: None,
        };
        Net::new(target, Instant::now(), 1).expect("epoll")
    }

    /// A PEP driver with sessions for users 1..=users (connection id = user - 1) on a ring of
    /// `contacts`.
    fn pep_driver(users: usize, contacts: usize, window: u32, rounds: u32) -> PepDrv {
        let cfg = PepCfg {
            users,
            contacts,
            rounds,
            window,
            rate: None,
            prefix: "p".into(),
        };
        let mut d = PepDrv::new(
            Arc::new(Shared::default()),
            cfg,
            Launcher::new(Vec::new(), 1, None),
            Launcher::new(Vec::new(), 1, None),
        );
        for u in 1..=users {
            d.add_session(u - 1, u);
        }
        d
    }

    /// Owner `owner`'s tune notification of item `k` stamped `stamp`.
    fn tune_event(owner: usize, k: u64, stamp: u64) -> Vec<u8> {
        format!(
            "<message type='headline' from='p{owner}@localhost'><event \
             xmlns='http://jabber.org/protocol/pubsub#event'><items \
             node='http://jabber.org/protocol/tune'><item id='{k}.{stamp}'><tune \
             xmlns='http://jabber.org/protocol/tune'/></item></items></event></message>"
        )
        .into_bytes()
    }

    fn pep_sent(d: &PepDrv) -> Vec<u64> {
        d.sessions.iter().map(|s| s.sent).collect()
    }

    #[test]
    fn pep_counts_contact_notifications_only() {
        // 10 users, 4 contacts each: p1's contacts are p9, p10, p2, p3.
        let mut d = pep_driver(10, 4, 1, 0);
        let mut net = no_net();
        d.sh.measuring.store(true, Relaxed);
        // p2 (session 1) receives p1's notification: a contact, 40 µs after the stamp.
        d.stanza(&mut net, 1, &tune_event(1, 0, 1_000), 41_000);
        // p1 receives its own copy: not an op.
        d.stanza(&mut net, 0, &tune_event(1, 0, 1_000), 41_000);
        // p6 receives p1's: not a contact (a stray), not an op.
        d.stanza(&mut net, 5, &tune_event(1, 0, 1_000), 41_000);
        // p9 receives p1's (the ring wraps), 60 µs.
        d.stanza(&mut net, 8, &tune_event(1, 0, 1_000), 61_000);
        // Someone else's account, and a chat message: nothing.
        let other = String::from_utf8(tune_event(1, 0, 1_000))
            .unwrap()
            .replace("p1@", "user1@");
        d.stanza(&mut net, 1, other.as_bytes(), 41_000);
        d.stanza(
            &mut net,
            1,
            b"<message from='p1@localhost' type='chat'><body>x</body></message>",
            1,
        );
        assert_eq!(d.sh.ops.load(Relaxed), 2);
        assert_eq!(d.sh.notified.load(Relaxed), 2);
        assert_eq!(d.sh.own_notified.load(Relaxed), 1);
        assert_eq!((d.hist.min(), d.hist.max()), (40, 60));
        // Outside the measured window: seen, not counted.
        d.sh.measuring.store(false, Relaxed);
        d.stanza(&mut net, 2, &tune_event(1, 1, 1_000), 41_000);
        assert_eq!(d.sh.ops.load(Relaxed), 2);
        assert_eq!(d.sh.notified.load(Relaxed), 3);
        // The notification of a node-creating first item (`c{ns}`): counted apart.
        d.sh.measuring.store(true, Relaxed);
        let first = String::from_utf8(tune_event(1, 0, 1_000))
            .unwrap()
            .replace("id='0.1000'", "id='c1000'");
        d.stanza(&mut net, 2, first.as_bytes(), 41_000);
        assert_eq!(d.sh.ops.load(Relaxed), 2);
        assert_eq!(d.sh.created_notified.load(Relaxed), 1);
        // The same item to the same contact again: a duplicate, not an op.
        d.stanza(&mut net, 1, &tune_event(1, 0, 1_000), 41_000);
        assert_eq!(d.sh.ops.load(Relaxed), 2);
        assert_eq!(d.sh.duplicates.load(Relaxed), 1);
        d.stanza(&mut net, 1, &tune_event(1, 1, 2_000), 42_000);
        assert_eq!(d.sh.ops.load(Relaxed), 3);
    }

    #[test]
    fn pep_creates_nodes_one_user_at_a_time() {
        let mut d = pep_driver(3, 2, 1, 0);
        let mut net = no_net();
        d.sh.phase.store(phase::CREATE, Relaxed);
        let _ = d.tick(&mut net, 1000);
        assert!(d.creating);
        let _ = d.tick(&mut net, 2000);
        assert_eq!(d.created, 0);
        // Its answer lets the next user's first publish go; none counts as a load publish.
        d.stanza(&mut net, 0, b"<iq type='result' id='create'/>", 3000);
        assert_eq!((d.created, d.creating), (1, true));
        d.stanza(&mut net, 1, b"<iq type='result' id='create'/>", 3000);
        d.stanza(&mut net, 2, b"<iq type='result' id='create'/>", 3000);
        assert_eq!((d.created, d.creating), (3, false));
        assert_eq!(d.sh.created.load(Relaxed), 3);
        assert_eq!(pep_sent(&d), [0, 0, 0]);
        // An error names what failed.
        let mut d = pep_driver(2, 1, 1, 0);
        d.sh.phase.store(phase::CREATE, Relaxed);
        let _ = d.tick(&mut net, 1000);
        d.stanza(
            &mut net,
            0,
            b"<iq type='error' id='create'><error type='cancel'><item-not-found \
              xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            2000,
        );
        let u = d.sh.unsupported.lock().unwrap().clone().unwrap();
        assert!(
            u.starts_with("the first publish (creating the node) was answered <item-not-found/>"),
            "{u}"
        );
        assert_eq!(d.created, 0);
    }

    #[test]
    fn pep_saturation_window_is_released_by_the_publish_result() {
        let mut d = pep_driver(3, 2, 2, 3);
        let mut net = no_net();
        d.sh.phase.store(phase::RUN, Relaxed);
        let _ = d.tick(&mut net, 1000);
        assert_eq!(pep_sent(&d), [2, 2, 2]);
        // A notification releases nothing; the result of a publish releases the next.
        d.stanza(&mut net, 0, &tune_event(1, 0, 1000), 2000);
        assert_eq!(pep_sent(&d), [2, 2, 2]);
        d.stanza(&mut net, 0, b"<iq type='result' id='pub0'/>", 2000);
        assert_eq!(pep_sent(&d), [3, 2, 2]);
        assert_eq!(d.sh.published.load(Relaxed), 1);
        // Rounds reached: no fourth.
        d.stanza(&mut net, 0, b"<iq type='result' id='pub1'/>", 3000);
        assert_eq!(pep_sent(&d), [3, 2, 2]);
        assert_eq!(d.sessions[0].inflight, 1);
        // Caps queries are answered and counted, not taken for publish answers.
        d.stanza(
            &mut net,
            1,
            b"<iq type='get' id='pub9' from='p1@localhost'><query \
              xmlns='http://jabber.org/protocol/disco#info' node='n#v'/></iq>",
            3000,
        );
        assert_eq!(d.sh.caps_queries.load(Relaxed), 1);
        assert_eq!(d.sessions[1].inflight, 2);
        // An error answer says the server does not do it.
        d.stanza(
            &mut net,
            2,
            b"<iq type='error' id='pub0'><error type='cancel'><feature-not-implemented \
              xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            3000,
        );
        let u = d.sh.unsupported.lock().unwrap().clone().unwrap();
        assert!(u.contains("<feature-not-implemented/>"), "{u}");
        assert_eq!(d.errors, 1);
    }

    /// Room `room`'s (1-based) groupchat message from `nick{occ}` stamped `stamp`.
    fn groupchat(room: usize, occ: usize, stamp: u64) -> Vec<u8> {
        format!(
            "<message from='room{room}@conference.localhost/nick{occ}' to='x@localhost/lt' \
             type='groupchat'><body>t{stamp}</body></message>"
        )
        .into_bytes()
    }

    fn sent(d: &MucDrv) -> Vec<u64> {
        d.sessions.iter().map(|s| s.sent).collect()
    }

    #[test]
    fn muc_saturation_window_is_released_by_the_own_reflected_copy() {
        // 2 rooms x 3 occupants, one own message in flight each, 2 rounds.
        let (mut d, mut net) = muc_driver(2, 3, 1, 0, 2, None);
        d.sh.phase.store(phase::RUN, Relaxed);
        let _ = d.tick(&mut net, 1000);
        assert_eq!(sent(&d), [1; 6]);
        // Session 1 (room1/nick2) receives nick3's message: not its own, nothing released.
        d.stanza(&mut net, 1, &groupchat(1, 3, 1000), 2000);
        assert_eq!(sent(&d), [1; 6]);
        assert_eq!(d.sessions[1].inflight, 1);
        // Its own copy comes back: the next one goes.
        d.stanza(&mut net, 1, &groupchat(1, 2, 1000), 2000);
        assert_eq!(sent(&d), [1, 2, 1, 1, 1, 1]);
        // A copy delayed from history is not an acknowledgement.
        let hist = b"<message from='room1@conference.localhost/nick2' type='groupchat'>\
            <body>t5</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>";
        d.stanza(&mut net, 1, hist, 3000);
        assert_eq!(d.sessions[1].inflight, 1);
        // The second copy: 2 rounds sent, no third.
        d.stanza(&mut net, 1, &groupchat(1, 2, 2000), 3000);
        assert_eq!(sent(&d), [1, 2, 1, 1, 1, 1]);
        assert_eq!(d.sessions[1].inflight, 0);
        // A bounced message releases its slot too, and counts as an error.
        d.stanza(
            &mut net,
            4,
            b"<message from='room2@conference.localhost' type='error'><error type='wait'/></message>",
            3000,
        );
        assert_eq!(sent(&d), [1, 2, 1, 1, 2, 1]);
        assert_eq!(d.errors, 1);
    }

    #[test]
    fn muc_counts_deliveries_with_latency_while_measuring() {
        let (mut d, mut net) = muc_driver(1, 2, 1, 0, 0, None);
        d.stanza(&mut net, 0, &groupchat(1, 2, 1_000), 51_000);
        assert_eq!(d.sh.ops.load(Relaxed), 0);
        d.sh.measuring.store(true, Relaxed);
        d.stanza(&mut net, 0, &groupchat(1, 2, 1_000), 51_000);
        d.stanza(&mut net, 1, &groupchat(1, 2, 1_000), 61_000);
        assert_eq!(d.sh.ops.load(Relaxed), 2);
        assert_eq!(d.hist.len(), 2);
        // µs from the stamp: 50 and 60.
        assert_eq!((d.hist.min(), d.hist.max()), (50, 60));
    }

    #[test]
    fn muc_room_window_lets_occupants_take_turns() {
        // 1 room x 4 occupants, at most 2 of the room's messages in flight, no rounds limit.
        let (mut d, mut net) = muc_driver(1, 4, 1, 2, 0, None);
        d.sh.phase.store(phase::RUN, Relaxed);
        let _ = d.tick(&mut net, 1000);
        assert_eq!(sent(&d), [1, 1, 0, 0]);
        d.stanza(&mut net, 0, &groupchat(1, 1, 1000), 2000);
        assert_eq!(sent(&d), [1, 1, 1, 0]);
        d.stanza(&mut net, 1, &groupchat(1, 2, 1000), 2000);
        assert_eq!(sent(&d), [1, 1, 1, 1]);
        d.stanza(&mut net, 2, &groupchat(1, 3, 2000), 3000);
        assert_eq!(sent(&d), [2, 1, 1, 1]);
        assert_eq!(d.rooms[0].inflight, 2);
    }

    #[test]
    fn muc_fixed_rate_spreads_over_rooms_and_occupants() {
        // 2 rooms x 3 occupants at 1000 room messages/s: one send per ms, room by room.
        let (mut d, mut net) = muc_driver(2, 3, 1, 0, 0, Some(1000.0));
        d.sh.phase.store(phase::RUN, Relaxed);
        let t0 = 5_000_000;
        let (wake, _) = d.tick(&mut net, t0);
        assert_eq!(wake, Some(t0 + 1_000_000));
        assert_eq!(sent(&d), [1, 0, 0, 0, 0, 0]);
        // 2.5 ms later: sends 2 and 3 (room 2's first occupant, room 1's second) are due.
        let (wake, _) = d.tick(&mut net, t0 + 2_500_000);
        assert_eq!(wake, Some(t0 + 3_000_000));
        assert_eq!(sent(&d), [1, 1, 0, 1, 0, 0]);
        // After 12 sends every occupant has sent twice: the same rate for each.
        let _ = d.tick(&mut net, t0 + 11_000_000);
        assert_eq!(sent(&d), [2; 6]);
        // Open loop: nothing waits for the reflected copies.
        assert!(d.sessions.iter().all(|s| s.inflight == 2));
    }

    #[test]
    fn error_conditions() {
        let e = b"<iq type='error' id='bl-0'><error type='cancel'>\
            <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";
        assert_eq!(error_condition(e), "service-unavailable");
        assert!(means_unsupported(&error_condition(e)));
        let e = b"<iq type='error' id='bl-1'><error type='wait'><resource-constraint \
            xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text>too many</text></error></iq>";
        assert_eq!(error_condition(e), "resource-constraint");
        assert_eq!(
            error_condition(b"<iq type='error'><error type='cancel'/></iq>"),
            "error"
        );
        assert_eq!(error_condition(b"<iq type='error'/>"), "error");
    }
}
