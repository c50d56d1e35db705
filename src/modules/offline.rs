//! XEP-0160: Best Practices for Handling Offline Messages, with XEP-0203 delay stamps.
//!
//! **Storing.** A normal or chat message for an account with no resource that can take it is
//! stored durably (the sending connection waits for the commit before reading on). The
//! sender gets a stanza error, never silence, when it cannot be kept:
//! `<policy-violation/>` (modify) for a stanza over `--max-offline-stanza-size` (smaller
//! than what may be routed: a stored stanza costs disk until the recipient logs in), and
//! `<resource-constraint/>` (wait) when the recipient has `--max-offline-messages` messages
//! or `--max-offline-bytes` bytes stored, or when the LMDB map has less than
//! `--lmdb-reserve-percent` free. The reserve keeps room for essential writes (accounts,
//! rosters), so no user, however many accounts they message, can fill the disk for everyone.
//! The operator is warned in the log each time the map's fill passes 80, 90 and 95 %.
//!
//! **Delivering.** Stored messages go, oldest first and stamped with `<delay/>`, to the first
//! resource that becomes available with a non-negative priority, by a task of their own (the
//! client's connection does not wait for it). The backlog is read from storage in bounded
//! chunks and each message is queued only when the client's send queue has room under half
//! of `--max-send-queue` (so live traffic still fits beside it); after each chunk the server
//! sends the client an IQ ping.
//!
//! **Deleting.** A message is deleted only once the client has *answered the ping that
//! followed its chunk*: the answer proves the client read everything before it (a client
//! must answer every IQ request, RFC 6120 §8.2.3; an error answer counts too). Bytes handed
//! to the socket, or even acknowledged by the client's TCP stack, are not enough: they are
//! lost if the connection dies before the client reads them. So nothing is ever lost; if the
//! connection ends mid-delivery, the messages of the chunks whose ping was not answered yet
//! (at most `MAX_UNACKED` chunks) are delivered again at the next availability: those
//! duplicates are the price. A resource that goes unavailable stops the delivery the same
//! way; an interrupted delivery resumes at once for another available resource of the
//! account, if there is one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::config::{pick, Config, ConfigError};
use crate::core::events::{priority, Kinds, ResourceAvailable, Undeliverable};
use crate::core::sessions::AckWait;
use crate::core::{ClientHandle, Ctx, Flow, Inbound, Refused, Registry, Route};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::error::{StanzaCondition, StanzaError};
use crate::xmpp::jid::{Jid, JidStr};
use crate::xmpp::ns;
use xmppd_storage::{OfflineFull, OfflineMessage, OfflinePush, OfflineQuota};

/// XEP-0085 chat states: messages carrying only these are not worth storing.
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// Most messages read from storage at once for delivery.
const CHUNK_MESSAGES: usize = 16;
/// Most stanza bytes read from storage at once for delivery (past the first message).
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks delivered and not yet acknowledged before delivery waits for the client: bounds
/// the duplicates after a lost connection.
const MAX_UNACKED: usize = 4;
/// Least time between two measurements of the map's fill on one shard.
const FILL_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Least time between two log lines about refusals for lack of space, per shard.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

/// XEP-0160's flags (`[modules.offline]` in the configuration file).
#[derive(Debug, Default, Clone, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineArgs {
    /// Most offline messages kept for one account; beyond it senders get
    /// `resource-constraint` [default: 1000].
    #[arg(long)]
    pub max_offline_messages: Option<usize>,
    /// Most bytes of offline messages kept for one account; beyond it senders get
    /// `resource-constraint` [default: 4194304].
    #[arg(long)]
    pub max_offline_bytes: Option<u64>,
    /// Largest stanza kept as an offline message, in bytes; larger ones get
    /// `policy-violation` (at most --max-stanza-size) [default: 65536, or --max-stanza-size
    /// if smaller].
    #[arg(long)]
    pub max_offline_stanza_size: Option<usize>,
}

/// XEP-0160's resolved settings.
#[derive(Debug, Clone)]
pub struct OfflineConfig {
    /// Most offline messages per account.
    pub max_offline_messages: usize,
    /// Most bytes of offline messages per account.
    pub max_offline_bytes: u64,
    /// Largest stanza stored offline.
    pub max_offline_stanza_size: usize,
}

impl OfflineArgs {
    /// Flags over the file over defaults, with bounds (`max_stanza_size`: the routed limit).
    pub fn resolve(
        &self,
        file: &OfflineArgs,
        max_stanza_size: usize,
    ) -> Result<OfflineConfig, ConfigError> {
        let c = OfflineConfig {
            max_offline_messages: pick(self.max_offline_messages, file.max_offline_messages, 1000),
            max_offline_bytes: pick(self.max_offline_bytes, file.max_offline_bytes, 4 << 20),
            max_offline_stanza_size: pick(
                self.max_offline_stanza_size,
                file.max_offline_stanza_size,
                (64 * 1024).min(max_stanza_size),
            ),
        };
        if c.max_offline_stanza_size < 1024 || c.max_offline_stanza_size > max_stanza_size {
            return Err(ConfigError(
                "--max-offline-stanza-size must be between 1024 and --max-stanza-size".into(),
            ));
        }
        if c.max_offline_bytes < c.max_offline_stanza_size as u64 {
            return Err(ConfigError(
                "--max-offline-bytes must be at least --max-offline-stanza-size".into(),
            ));
        }
        Ok(c)
    }
}

/// Register offline storage and delivery.
pub fn register(r: &mut Registry, config: &Config) {
    r.module("offline");
    r.server_feature("msgoffline");
    let offline = Rc::new(Offline::new(config));
    let o = offline.clone();
    r.hook_for::<Undeliverable>(Kinds::MESSAGE, priority::PROTOCOL, move |ctx, m| {
        o.store(ctx, m)
    });
    r.hook::<ResourceAvailable>(priority::PROTOCOL, move |ctx, a| {
        offline.available(ctx, a.jid, a.priority);
        None
    });
}

/// The module's shard-local state.
struct Offline {
    max_messages: usize,
    max_bytes: u64,
    max_stanza: usize,
    reserve_bytes: u64,
    /// Accounts whose backlog is being delivered, and to which connection.
    delivering: RefCell<AHashMap<String, Rc<ClientHandle>>>,
    /// When this shard last measured the map's fill.
    fill_checked: Cell<Option<Instant>>,
    /// When this shard last logged a refusal for lack of space.
    refusal_logged: Cell<Option<Instant>>,
}

/// How a delivery ended.
enum Outcome {
    /// Everything stored was delivered, acknowledged and deleted (this many messages).
    Finished(usize),
    /// Interrupted (connection lost, resource unavailable, storage error); the rest waits.
    Stopped(usize),
}

impl Offline {
    fn new(config: &Config) -> Offline {
        Offline {
            max_messages: config.modules.offline.max_offline_messages,
            max_bytes: config.modules.offline.max_offline_bytes,
            max_stanza: config.modules.offline.max_offline_stanza_size,
            reserve_bytes: config.lmdb_reserve_bytes(),
            delivering: RefCell::default(),
            fill_checked: Cell::new(None),
            refusal_logged: Cell::new(None),
        }
    }

    /// Store a message (IM-MSG-07/11/13).
    fn store(self: &Rc<Self>, ctx: &Ctx, m: &Inbound<'_>) -> Flow {
        let limits = ctx.config().xml_limits();
        if m.stanza.len() > self.max_stanza {
            let id = xml::scan_stanza(m.stanza, &StreamNs::new(ns::CLIENT), &limits)
                .ok()
                .and_then(|head| head.attr("id").map(|id| id.into_owned()));
            let err = StanzaError::with_text(
                StanzaCondition::PolicyViolation,
                format!(
                    "too large to keep for an offline recipient (at most {} bytes)",
                    self.max_stanza
                ),
            );
            let refused = Refused {
                ty: m.ty,
                id: id.as_deref(),
                route: m.route,
            };
            ctx.bounce(refused, err);
            return Flow::Handled(None);
        }
        let Ok(el) = xml::parse_element(m.stanza, &StreamNs::new(ns::CLIENT), &limits) else {
            return Flow::Continue;
        };
        let only_chat_states =
            el.child("body", &el.ns).is_none() && el.elements().all(|c| c.ns == NS_CHATSTATES);
        if only_chat_states {
            // IM-MSG-11: ephemeral; dropping it is what the sender expects.
            return Flow::Handled(None);
        }
        let user = m.route.to.bare().to_string();
        let from = m.route.from.to_string();
        let to = m.route.to.to_string();
        let stanza = m.stanza.to_vec();
        let id = el.attr("id").map(str::to_string);
        let stamp = crate::util::now_unix_ms();
        let quota = OfflineQuota {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            reserve: Some((ctx.storage().map_gauge(), self.reserve_bytes)),
        };
        let done = ctx
            .storage()
            .submit(move |txn| txn.push_offline_within(&user, stamp, &from, &stanza, &quota));
        let ctx = ctx.clone();
        let this = self.clone();
        let ty = m.ty;
        let sender = m.route.from.to_string();
        Flow::Handled(Some(Box::pin(async move {
            let result = done.await;
            this.check_fill(&ctx);
            let err = match result {
                Ok(OfflinePush::Stored(_)) => return,
                // IM-MSG-13: never dropped silently.
                Ok(OfflinePush::Full(OfflineFull::Messages | OfflineFull::Bytes)) => {
                    StanzaError::with_text(
                        StanzaCondition::ResourceConstraint,
                        "the recipient's offline storage is full",
                    )
                }
                Ok(OfflinePush::Full(OfflineFull::Map)) => {
                    if this.first_refusal_in_a_while() {
                        tracing::warn!(
                            recipient = %to,
                            "offline messages refused: the LMDB map is down to its reserve \
                             (--lmdb-reserve-percent); raise --lmdb-map-size-mib (logged once \
                             a minute)"
                        );
                    }
                    server_full()
                }
                // Issue 8: the recipient's account was deleted meanwhile; nothing was stored.
                Err(xmppd_storage::StorageError::NoSuchAccount) => {
                    StanzaError::new(StanzaCondition::ServiceUnavailable)
                }
                Err(e) if e.is_full() => {
                    tracing::error!(error = %e, "storing an offline message failed: LMDB map full");
                    server_full()
                }
                Err(e) => {
                    tracing::error!(error = %e, "storing an offline message failed");
                    StanzaError::new(StanzaCondition::InternalServerError)
                }
            };
            let route = Route::new(JidStr::trusted(&sender), JidStr::trusted(&to));
            let id = id.as_deref();
            ctx.bounce(Refused { ty, id, route }, err);
        })))
    }

    /// True at most once per `REFUSAL_LOG_EVERY`.
    fn first_refusal_in_a_while(&self) -> bool {
        let now = Instant::now();
        let due = match self.refusal_logged.get() {
            Some(t) => now.duration_since(t) >= REFUSAL_LOG_EVERY,
            None => true,
        };
        if due {
            self.refusal_logged.set(Some(now));
        }
        due
    }

    /// Warn the operator when the map's fill passes a threshold (measured at most once a
    /// second per shard; each threshold reported once per process until the fill drops).
    fn check_fill(&self, ctx: &Ctx) {
        let now = Instant::now();
        if self
            .fill_checked
            .get()
            .is_some_and(|t| now.duration_since(t) < FILL_CHECK_EVERY)
        {
            return;
        }
        self.fill_checked.set(Some(now));
        match ctx.storage().map_gauge().observe() {
            Ok((usage, Some(level))) => tracing::warn!(
                used_mib = usage.used_bytes >> 20,
                map_mib = usage.map_bytes >> 20,
                percent = usage.percent_used(),
                "LMDB map {level}% full: offline messages are refused once less than {}% is \
                 free; raise --lmdb-map-size-mib",
                ctx.config().lmdb_reserve_percent
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "measuring the LMDB map failed"),
        }
    }

    /// A resource became available: deliver the account's backlog to it (IM-MSG-12).
    fn available(self: &Rc<Self>, ctx: &Ctx, jid: &Jid, priority: i8) {
        // Edge case 32: never to a negative-priority resource.
        if priority < 0 {
            return;
        }
        self.check_fill(ctx);
        let user = jid.bare_str();
        if let Some(h) = self.delivering.borrow().get(user) {
            if !h.is_gone() {
                return;
            }
        }
        let handle = ctx
            .sessions()
            .borrow()
            .account(user)
            .and_then(|a| a.get(jid.resource()?))
            .map(|r| r.handle.clone());
        if let Some(handle) = handle {
            self.start(ctx, jid.clone(), handle);
        }
    }

    /// Start delivering to `jid` if anything is stored.
    fn start(self: &Rc<Self>, ctx: &Ctx, jid: Jid, handle: Rc<ClientHandle>) {
        let user = jid.bare_str().to_string();
        match ctx.storage().offline().count(&user) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading offline messages failed");
                return;
            }
        }
        self.delivering
            .borrow_mut()
            .insert(user.clone(), handle.clone());
        let this = self.clone();
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let outcome = this.deliver(&ctx, &jid, &handle).await;
            let mine = {
                let mut delivering = this.delivering.borrow_mut();
                let mine = delivering
                    .get(&user)
                    .is_some_and(|h| Rc::ptr_eq(h, &handle));
                if mine {
                    delivering.remove(&user);
                }
                mine
            };
            match outcome {
                Outcome::Finished(n) => {
                    tracing::debug!(%jid, messages = n, "offline delivery finished")
                }
                Outcome::Stopped(n) => {
                    tracing::debug!(%jid, messages = n, "offline delivery stopped");
                    if mine {
                        this.resume(&ctx, &user);
                    }
                }
            }
        })
        .detach();
    }

    /// After an interrupted delivery: continue with another available resource, if any.
    fn resume(self: &Rc<Self>, ctx: &Ctx, user: &str) {
        let next = ctx.sessions().borrow().account(user).and_then(|a| {
            a.non_negative()
                .find(|r| !r.handle.is_gone())
                .map(|r| (r.jid.clone(), r.handle.clone()))
        });
        if let Some((jid, handle)) = next {
            self.start(ctx, jid, handle);
        }
    }

    /// Deliver the backlog in acknowledged chunks, deleting each once acknowledged.
    async fn deliver(&self, ctx: &Ctx, jid: &Jid, handle: &Rc<ClientHandle>) -> Outcome {
        let user = jid.bare_str();
        let room = ctx.config().max_send_queue / 2;
        let limits = ctx.config().xml_limits();
        let mut after = 0;
        let mut unacked: VecDeque<(AckWait, Vec<u64>)> = VecDeque::new();
        let mut done = 0;
        loop {
            // Delete what the client acknowledged; wait while too much is not.
            while unacked
                .front()
                .is_some_and(|(ack, _)| ack.is_answered() || unacked.len() >= MAX_UNACKED)
            {
                let Some((ack, seqs)) = unacked.pop_front() else {
                    break;
                };
                if ack.await.is_err() {
                    return Outcome::Stopped(done);
                }
                done += seqs.len();
                delete(ctx, user, seqs).await;
            }
            if !still_available(ctx, jid, handle) {
                return Outcome::Stopped(done);
            }
            let chunk =
                match ctx
                    .storage()
                    .offline()
                    .list_after(user, after, CHUNK_MESSAGES, CHUNK_BYTES)
                {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => chunk,
                    Err(e) => {
                        tracing::error!(error = %e, "reading offline messages failed");
                        return Outcome::Stopped(done);
                    }
                };
            let mut seqs = Vec::with_capacity(chunk.len());
            for m in &chunk {
                after = m.seq;
                let Some(bytes) = stamped(m, jid.domain(), &limits) else {
                    tracing::warn!(user, seq = m.seq, "dropping an unreadable offline message");
                    seqs.push(m.seq);
                    continue;
                };
                if handle.space_for(bytes.len(), room).await.is_err() {
                    return Outcome::Stopped(done);
                }
                handle.send(&bytes);
                seqs.push(m.seq);
            }
            let Some(ack) = handle.request_ack() else {
                return Outcome::Stopped(done);
            };
            unacked.push_back((ack, seqs));
        }
        for (ack, seqs) in unacked {
            if ack.await.is_err() {
                return Outcome::Stopped(done);
            }
            done += seqs.len();
            delete(ctx, user, seqs).await;
        }
        Outcome::Finished(done)
    }
}

fn server_full() -> StanzaError {
    StanzaError::with_text(
        StanzaCondition::ResourceConstraint,
        "the server's offline storage is full",
    )
}

/// The resource still takes offline messages: connected on this handle, available, with a
/// non-negative priority.
fn still_available(ctx: &Ctx, jid: &Jid, handle: &Rc<ClientHandle>) -> bool {
    let sessions = ctx.sessions().borrow();
    let resource = jid
        .resource()
        .and_then(|r| sessions.account(jid.bare_str())?.get(r));
    resource.is_some_and(|r| {
        Rc::ptr_eq(&r.handle, handle) && r.priority.is_some_and(|p| p >= 0) && !handle.is_gone()
    })
}

/// The stored stanza with its XEP-0203 delay stamp, or None if it cannot be parsed.
fn stamped(m: &OfflineMessage, domain: &str, limits: &xml::Limits) -> Option<Vec<u8>> {
    let mut el = xml::parse_element(&m.stanza, &StreamNs::new(ns::CLIENT), limits).ok()?;
    el.push_child(
        Element::new("delay", ns::DELAY)
            .with_attr("from", domain)
            .with_attr("stamp", crate::util::xep0082_datetime(m.stamp_unix_ms)),
    );
    let mut out = Vec::with_capacity(m.stanza.len() + 128);
    el.write_to(&mut out, ns::CLIENT);
    Some(out)
}

/// Delete acknowledged messages (durably, before the next chunk is read past them).
async fn delete(ctx: &Ctx, user: &str, seqs: Vec<u64>) {
    let user = user.to_string();
    let done = ctx
        .storage()
        .submit(move |txn| txn.delete_offline(&user, &seqs));
    if let Err(e) = done.await {
        tracing::error!(error = %e, "deleting delivered offline messages failed");
    }
}
