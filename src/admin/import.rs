//! `xmppd import`: accounts with their rosters, vCards and privacy lists in bulk, from a
//! XEP-0227 (Portable Import/Export) file or a plain list.
//!
//! Two passes over the file, which is held in memory as text (no DOM): the first parses and
//! validates everything and keeps only each user's JID, line and password; the second parses
//! again and writes, [`BATCH`] users with their rosters per durable write transaction, while
//! worker threads derive the SCRAM keys (PBKDF2, the cost of an import) ahead of it in file
//! order. A file with an error therefore writes nothing, and an import of 100k users with
//! 50 contacts each keeps only the accounts, not the 5M roster items, in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use xmlparser::{ElementEnd, Token, Tokenizer};
use xmppd_storage::{
    Account, PrivacyList, PrivacyMatch, RosterItem, ScramKeys, Storage, StorageError, Subscription,
};

use super::{err, now_unix, open, AdminError};
use crate::config::{Config, ImportArgs, ImportFormat};
use crate::modules::privacy::list::{self as privacy, NS_PRIVACY};
use crate::modules::privacy::NS_BLOCKING;
use crate::modules::vcard::NS_VCARD;
use crate::stream::sasl::{self, HashAlg};
use crate::xml::{self, Element, StreamNs};
use crate::xmpp::jid::{self, Jid};
use crate::xmpp::ns;

/// XEP-0227's namespace.
const NS_PIE: &str = "urn:xmpp:pie:0";
/// The roster namespace (RFC 6121).
const NS_ROSTER: &str = "jabber:iq:roster";
/// Users per write transaction: large enough that the fsync per commit is negligible, small
/// enough that a transaction stays a few MB.
const BATCH: usize = 1000;
/// Users per work unit of a key-derivation thread.
const CHUNK: usize = 16;
/// LMDB's largest key (MDB_MAXKEYSIZE in the default build); a roster key is
/// `user \0 contact`, so the two JIDs together must fit.
const MAX_KEY: usize = 511;

/// `xmppd import FILE`.
pub fn import(config: &Config, args: &ImportArgs) -> Result<(), AdminError> {
    let started = Instant::now();
    let name = args.file.display().to_string();
    let text = read_file(&args.file)?;
    let format = args.format.unwrap_or_else(|| detect(&text));
    let checks = Checks { config };

    // Pass 1: validate everything; keep what key derivation and the existence check need.
    let mut users: Vec<Pending> = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    let mut source = Source::new(format, &text, &checks);
    for rec in source.by_ref() {
        let rec = rec.map_err(|e| e.in_file(&name))?;
        if let Some(first) = lines.insert(rec.jid.clone(), rec.line) {
            return Err(err(format!(
                "{name}:{}: {} is listed twice (first at line {first})",
                rec.line, rec.jid
            )));
        }
        users.push(Pending {
            jid: rec.jid,
            line: rec.line,
            password: rec.password,
        });
    }
    let warnings = source.warnings();
    drop(lines);

    let mode = Mode::of(args);
    let storage = open(config)?;
    let skip = existing(&storage, &users, mode, &name)?;
    let skipped = skip.iter().filter(|s| **s).count();
    if !warnings.is_empty() {
        eprintln!("xmppd: warning: {name}: {warnings}");
    }

    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let plan = KeyPlan::new(&users, &skip, args.shared_salt);
    let job = WriteJob {
        storage: &storage,
        text: &text,
        format,
        checks: &checks,
        mode,
        file: &name,
    };
    let totals = derive_and_write(&job, &users, &plan, threads, config.scram_iterations)?;
    storage.shutdown();
    println!(
        "imported {} accounts ({} roster items, {} vCards, {} privacy lists), skipped {} \
         existing, in {:.1} s",
        totals.accounts,
        totals.items,
        totals.vcards,
        totals.privacy_lists,
        skipped + totals.skipped_late,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What to do with an account that already exists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Refuse the import (the default).
    Refuse,
    /// Leave it and its data untouched.
    Skip,
    /// Replace its credentials, roster and (if the file has them) vCard and privacy lists.
    Replace,
}

impl Mode {
    fn of(args: &ImportArgs) -> Mode {
        if args.replace {
            Mode::Replace
        } else if args.skip_existing {
            Mode::Skip
        } else {
            Mode::Refuse
        }
    }
}

/// A validated user kept between the passes.
struct Pending {
    jid: String,
    line: usize,
    password: String,
}

/// One user as read from the file, validated.
struct UserRecord {
    /// Normalized bare JID.
    jid: String,
    /// Where the user starts in the file.
    line: usize,
    password: String,
    /// Roster items, with distinct contacts.
    items: Vec<RosterItem>,
    /// The serialized `<vCard xmlns='vcard-temp'/>`, as the vCard module stores it.
    vcard: Option<Vec<u8>>,
    /// The privacy lists, if the file has a `<query xmlns='jabber:iq:privacy'/>` or a
    /// `<blocklist xmlns='urn:xmpp:blocking'/>` (even an empty one) for the user.
    privacy: Option<PrivacyData>,
}

/// A user's privacy lists (XEP-0016) as read from the file, validated: distinct names,
/// within the server's bounds, groups in the user's roster, the default one of the lists.
#[derive(Default)]
struct PrivacyData {
    /// The lists that have items (empty ones are skipped with a warning).
    lists: Vec<PrivacyList>,
    /// The default list's name.
    default: Option<String>,
}

/// A problem at a line of the file.
#[derive(Debug)]
struct FileError {
    line: usize,
    msg: String,
}

impl FileError {
    fn new(line: usize, msg: impl Into<String>) -> FileError {
        FileError {
            line,
            msg: msg.into(),
        }
    }

    fn in_file(self, name: &str) -> AdminError {
        err(format!("{name}:{}: {}", self.line, self.msg))
    }
}

fn read_file(path: &Path) -> Result<String, AdminError> {
    let bytes = std::fs::read(path).map_err(|e| err(format!("reading {}: {e}", path.display())))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|b| **b == b'\n').count();
        err(format!("{}:{line}: not UTF-8", path.display()))
    })
}

/// XEP-0227 if the file starts with `<` (after a byte order mark and whitespace), else list.
fn detect(text: &str) -> ImportFormat {
    if text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
    {
        ImportFormat::Xep0227
    } else {
        ImportFormat::List
    }
}

/// Which users already have an account: an error in [`Mode::Refuse`] if any does.
fn existing(
    storage: &Storage,
    users: &[Pending],
    mode: Mode,
    file: &str,
) -> Result<Vec<bool>, AdminError> {
    let accounts = storage.accounts();
    let mut skip = vec![false; users.len()];
    let mut first = None;
    let mut count = 0;
    for (u, s) in users.iter().zip(skip.iter_mut()) {
        if accounts.exists(&u.jid).map_err(|e| err(e.to_string()))? {
            count += 1;
            first.get_or_insert(u);
            *s = mode == Mode::Skip;
        }
    }
    match first {
        Some(u) if mode == Mode::Refuse => Err(err(format!(
            "{file}:{}: {} already exists ({count} of the file's accounts do); nothing was \
             imported; pass --skip-existing to leave existing accounts alone or --replace to \
             overwrite them",
            u.line, u.jid
        ))),
        _ => Ok(skip),
    }
}

// ---------------------------------------------------------------------------------------------
// Key derivation and writing.

/// SCRAM-SHA-1 and SCRAM-SHA-256 keys of one account.
type Credentials = (ScramKeys, ScramKeys);

/// Which passwords the workers derive keys for, and which result each user takes.
struct KeyPlan {
    /// Indices (into the users) whose password is derived, in file order.
    work: Vec<usize>,
    /// Per user: the index into `work` of its keys (None: skipped).
    slot: Vec<Option<usize>>,
    /// Several users may take the same keys (`--shared-salt`).
    shared: bool,
}

impl KeyPlan {
    fn new(users: &[Pending], skip: &[bool], shared: bool) -> KeyPlan {
        let mut work = Vec::new();
        let mut slot = Vec::with_capacity(users.len());
        let mut by_password: HashMap<&str, usize> = HashMap::new();
        for (i, (u, skip)) in users.iter().zip(skip).enumerate() {
            if *skip {
                slot.push(None);
                continue;
            }
            let s = if shared {
                *by_password.entry(&u.password).or_insert_with(|| {
                    work.push(i);
                    work.len() - 1
                })
            } else {
                work.push(i);
                work.len() - 1
            };
            slot.push(Some(s));
        }
        KeyPlan { work, slot, shared }
    }
}

/// What the write pass needs besides the keys.
struct WriteJob<'a> {
    storage: &'a Storage,
    text: &'a str,
    format: ImportFormat,
    checks: &'a Checks<'a>,
    mode: Mode,
    file: &'a str,
}

/// What was written.
#[derive(Default)]
struct Totals {
    accounts: usize,
    items: usize,
    vcards: usize,
    privacy_lists: usize,
    /// Accounts created by someone else between the check and the write (`--skip-existing`).
    skipped_late: usize,
}

/// Runs `threads` key-derivation workers and, on this thread, the write pass that consumes
/// their results in file order.
fn derive_and_write(
    job: &WriteJob<'_>,
    users: &[Pending],
    plan: &KeyPlan,
    threads: usize,
    iterations: u32,
) -> Result<Totals, AdminError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Vec<Credentials>)>();
    std::thread::scope(|s| {
        for _ in 0..threads.min(plan.work.len().div_ceil(CHUNK)) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                    let Some(chunk) = plan.work.get(start..(start + CHUNK).min(plan.work.len()))
                    else {
                        break;
                    };
                    if chunk.is_empty() {
                        break;
                    }
                    let keys = chunk
                        .iter()
                        .map(|&u| credentials(&users[u].password, iterations))
                        .collect();
                    if tx.send((start, keys)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let result = write_all(job, plan, &rx);
        // On an error, the workers stop after their current chunk.
        stop.store(true, Ordering::Relaxed);
        result
    })
}

fn credentials(password: &str, iterations: u32) -> Credentials {
    let conv = |k: sasl::ScramKeys| ScramKeys {
        salt: k.salt,
        iterations: k.iterations,
        stored_key: k.stored_key,
        server_key: k.server_key,
    };
    (
        conv(sasl::new_keys(HashAlg::Sha1, password, iterations)),
        conv(sasl::new_keys(HashAlg::Sha256, password, iterations)),
    )
}

/// The second pass: parse again, pair each user with its keys, write in batches.
fn write_all(
    job: &WriteJob<'_>,
    plan: &KeyPlan,
    rx: &mpsc::Receiver<(usize, Vec<Credentials>)>,
) -> Result<Totals, AdminError> {
    let mut keys: Vec<Option<Credentials>> = vec![None; plan.work.len()];
    let mut totals = Totals::default();
    let mut batch: Vec<(UserRecord, Credentials)> = Vec::with_capacity(BATCH);
    for (i, rec) in Source::new(job.format, job.text, job.checks).enumerate() {
        // The first pass accepted the same text with the same checks.
        let rec = rec.map_err(|e| e.in_file(job.file))?;
        let Some(slot) = plan.slot.get(i).copied().flatten() else {
            continue;
        };
        while keys[slot].is_none() {
            let (start, derived) = rx
                .recv()
                .map_err(|_| err("a key derivation thread stopped"))?;
            for (k, d) in derived.into_iter().enumerate() {
                keys[start + k] = Some(d);
            }
        }
        let creds = if plan.shared {
            keys[slot].clone()
        } else {
            keys[slot].take()
        };
        batch.push((rec, creds.ok_or_else(|| err("missing keys"))?));
        if batch.len() == BATCH {
            write_batch(job, &mut batch, &mut totals)?;
        }
    }
    if !batch.is_empty() {
        write_batch(job, &mut batch, &mut totals)?;
    }
    Ok(totals)
}

/// Writes `batch` in one durable transaction and clears it.
fn write_batch(
    job: &WriteJob<'_>,
    batch: &mut Vec<(UserRecord, Credentials)>,
    totals: &mut Totals,
) -> Result<(), AdminError> {
    let mode = job.mode;
    let now = now_unix();
    let mut current: Option<(String, usize)> = None;
    let mut conflict = false;
    let result = job.storage.write_sync(|txn| {
        let mut done = Totals::default();
        for (rec, (sha1, sha256)) in batch.iter() {
            current = Some((rec.jid.clone(), rec.line));
            let account = |created_unix, disabled| Account {
                sha1: sha1.clone(),
                sha256: sha256.clone(),
                created_unix,
                disabled,
            };
            let old = txn.account(&rec.jid)?;
            let replacing = old.is_some();
            match (old, mode) {
                (None, _) => txn.create_account(&rec.jid, &account(now, false))?,
                (Some(old), Mode::Replace) => {
                    txn.set_account(&rec.jid, &account(old.created_unix, old.disabled))?;
                    let keep: HashSet<&str> = rec.items.iter().map(|i| i.jid.as_str()).collect();
                    for old in txn.roster_items(&rec.jid)? {
                        if !keep.contains(old.jid.as_str()) {
                            txn.delete_roster_item(&rec.jid, &old.jid)?;
                        }
                    }
                }
                (Some(_), Mode::Skip) => {
                    done.skipped_late += 1;
                    continue;
                }
                (Some(_), Mode::Refuse) => {
                    conflict = true;
                    return Err(StorageError::AlreadyExists);
                }
            }
            for item in &rec.items {
                txn.put_roster_item(&rec.jid, item)?;
            }
            if !rec.items.is_empty() || mode == Mode::Replace {
                txn.bump_roster_version(&rec.jid)?;
            }
            if let Some(vcard) = &rec.vcard {
                txn.put_vcard(&rec.jid, vcard)?;
                done.vcards += 1;
            }
            if let Some(p) = &rec.privacy {
                if replacing {
                    // The file's lists instead of the account's (same-named ones are overwritten).
                    for old in txn.privacy(&rec.jid)?.lists {
                        if !p.lists.iter().any(|l| l.name == old.name) {
                            txn.delete_privacy_list(&rec.jid, &old.name)?;
                        }
                    }
                }
                for l in &p.lists {
                    txn.put_privacy_list(&rec.jid, l)?;
                }
                if p.default.is_some() || replacing {
                    txn.set_privacy_default(&rec.jid, p.default.as_deref())?;
                }
                done.privacy_lists += p.lists.len();
            }
            done.accounts += 1;
            done.items += rec.items.len();
        }
        Ok(done)
    });
    match result {
        Ok(done) => {
            totals.accounts += done.accounts;
            totals.items += done.items;
            totals.vcards += done.vcards;
            totals.privacy_lists += done.privacy_lists;
            totals.skipped_late += done.skipped_late;
            batch.clear();
            Ok(())
        }
        Err(e) => {
            let (jid, line) = current.unwrap_or_default();
            let why = if conflict {
                format!("{jid} was created by someone else during the import")
            } else if e.is_full() {
                format!("writing {jid}: {e} (a larger --lmdb-map-size-mib may help)")
            } else {
                format!("writing {jid}: {e}")
            };
            Err(err(format!(
                "{}:{line}: {why}; {} accounts of the file were imported before this error, the \
                 {} of this batch were not; rerun with --skip-existing to import the rest",
                job.file,
                totals.accounts,
                batch.len()
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation shared by both formats.

/// Checks against the configuration (served domains, roster limits).
struct Checks<'c> {
    config: &'c Config,
}

impl Checks<'_> {
    /// A served domain, normalized.
    fn host(&self, domain: &str) -> Result<String, String> {
        let d = jid::nameprep_domain(domain)
            .map_err(|e| format!("{domain:?} is not a valid domain: {e}"))?;
        if !self.config.serves(&d) {
            return Err(format!(
                "host {d} is not served here (served: {}); pass --domain {d}",
                self.config.domains.join(", ")
            ));
        }
        Ok(d.into_owned())
    }

    /// An account's normalized bare JID from its parts.
    fn user(&self, local: &str, domain: &str) -> Result<String, String> {
        let domain = self.host(domain)?;
        let j = Jid::new(Some(local), &domain, None)
            .map_err(|e| format!("{local:?} is not a valid user name: {e}"))?;
        Ok(j.as_str().to_owned())
    }

    /// An account's normalized bare JID from `user@domain`.
    fn user_jid(&self, s: &str) -> Result<String, String> {
        let j = Jid::parse(s).map_err(|e| format!("{s:?} is not a valid JID: {e}"))?;
        match (j.local(), j.resource()) {
            (Some(local), None) => self.user(local, j.domain()),
            _ => Err(format!("{s:?} must be a bare JID like user@domain")),
        }
    }

    fn password(&self, user: &str, pw: &str) -> Result<(), String> {
        if pw.is_empty() {
            return Err(format!("{user} has an empty password"));
        }
        if pw.len() > 1024 {
            return Err(format!("{user}'s password is longer than 1024 bytes"));
        }
        Ok(())
    }

    /// A roster item's normalized bare JID.
    fn contact(&self, user: &str, s: &str) -> Result<String, String> {
        let j = Jid::parse(s).map_err(|e| format!("contact {s:?} is not a valid JID: {e}"))?;
        if !j.is_bare() {
            return Err(format!("contact {s:?} must be a bare JID"));
        }
        if user.len() + 1 + j.as_str().len() > MAX_KEY {
            return Err(format!(
                "contact {s:?} and {user} are together longer than the {MAX_KEY} bytes storage \
                 allows"
            ));
        }
        Ok(j.as_str().to_owned())
    }

    fn text(&self, what: &str, s: &str) -> Result<(), String> {
        let max = self.config.modules.roster.max_roster_text;
        if s.len() > max {
            return Err(format!(
                "{what} longer than {max} bytes (--max-roster-text)"
            ));
        }
        Ok(())
    }

    /// The user's finished item list: distinct contacts, within --max-roster-items.
    fn items(&self, rec: &UserRecord) -> Result<(), String> {
        let max = self.config.modules.roster.max_roster_items;
        if rec.items.len() > max {
            return Err(format!(
                "{} has {} roster items, more than {max} (--max-roster-items)",
                rec.jid,
                rec.items.len()
            ));
        }
        Ok(())
    }
}

/// A privacy list's problem for the report: the condition's text, or its name.
fn why(e: &crate::xmpp::error::StanzaError) -> String {
    match &e.text {
        Some(t) => format!("{t} ({})", e.condition.name()),
        None => e.condition.name().to_owned(),
    }
}

impl Checks<'_> {
    /// One `<list/>` of a user, as a `jabber:iq:privacy` set would take it (XEP-0016 §2.1
    /// syntax through the privacy module's parser, --max-privacy-items,
    /// --max-blocklist-items), and the storage key limit.
    fn privacy_list(&self, user: &str, el: &Element) -> Result<PrivacyList, String> {
        let shown = el.attr("name").unwrap_or_default();
        let l = privacy::parse_list(el)
            .map_err(|e| format!("{user}'s privacy list {shown:?}: {}", why(&e)))?;
        if user.len() + 1 + l.name.len() > MAX_KEY {
            return Err(format!(
                "{user}'s privacy list {shown:?}: the name and the user are together longer than \
                 the {MAX_KEY} bytes storage allows"
            ));
        }
        match self.config.modules.privacy.over_bounds(&l) {
            Some(why) => Err(format!("{user}'s privacy list {shown:?} {why}")),
            None => Ok(l),
        }
    }

    /// A user's privacy lists once the whole user is read (its roster may come after them):
    /// --max-privacy-lists, `group` items naming groups of the user's roster in the file (as
    /// a `jabber:iq:privacy` set requires: item-not-found), the default one of the lists.
    fn privacy(&self, rec: &UserRecord, read: PrivacyRead) -> Result<PrivacyData, FileError> {
        let user = rec.jid.as_str();
        let max = self.config.modules.privacy.max_lists;
        if read.lists.len() > max {
            return Err(FileError::new(
                rec.line,
                format!(
                    "{user} has {} privacy lists, more than {max} (--max-privacy-lists)",
                    read.lists.len()
                ),
            ));
        }
        for (l, line) in &read.lists {
            let missing = l.items.iter().find_map(|i| match &i.what {
                PrivacyMatch::Group(g)
                    if !rec.items.iter().any(|r| r.groups.iter().any(|x| x == g)) =>
                {
                    Some(g)
                }
                _ => None,
            });
            if let Some(g) = missing {
                return Err(FileError::new(
                    *line,
                    format!(
                        "{user}'s privacy list {:?}: no roster group {g:?} in the user's roster \
                         (item-not-found)",
                        l.name
                    ),
                ));
            }
        }
        let default = match read.default {
            None => None,
            Some((name, _)) if read.lists.iter().any(|(l, _)| l.name == name) => Some(name),
            // An empty list filters nothing: as if there were no default (warned about).
            Some((name, _)) if read.empty.contains(&name) => None,
            Some((name, line)) => {
                return Err(FileError::new(
                    line,
                    format!("{user}'s default privacy list {name:?} is not one of its lists"),
                ))
            }
        };
        Ok(PrivacyData {
            lists: read.lists.into_iter().map(|(l, _)| l).collect(),
            default,
        })
    }

    /// A `<blocklist/>` item's JID, normalized as a XEP-0191 block command normalizes it.
    fn blocked_jid(&self, user: &str, s: &str) -> Result<String, String> {
        privacy::parse_jid(s).map_err(|e| format!("{user}'s blocklist: {}", why(&e)))
    }

    /// Merges a user's `<blocklist/>` into its privacy data as a XEP-0191 block command
    /// changes the stored lists: the JIDs go first in the default list, else in the list named
    /// `urn:xmpp:blocking`, which becomes the default (created if there is none, within
    /// --max-privacy-lists); the result within --max-blocklist-items.
    fn blocklist(
        &self,
        user: &str,
        data: &mut PrivacyData,
        read: BlockRead,
    ) -> Result<(), FileError> {
        if read.jids.is_empty() {
            return Ok(());
        }
        let at = |msg: String| FileError::new(read.line, msg);
        let bounds = &self.config.modules.privacy;
        let base = match &data.default {
            Some(d) => data.lists.iter().position(|l| l.name == *d),
            None => None,
        }
        .or_else(|| {
            data.lists
                .iter()
                .position(|l| l.name == privacy::BLOCKLIST_NAME)
        });
        if base.is_none() {
            if data.lists.len() >= bounds.max_lists {
                return Err(at(format!(
                    "{user}'s blocklist needs a new privacy list {:?}: {} privacy lists, more \
                     than {} (--max-privacy-lists)",
                    privacy::BLOCKLIST_NAME,
                    data.lists.len() + 1,
                    bounds.max_lists
                )));
            }
            if user.len() + 1 + privacy::BLOCKLIST_NAME.len() > MAX_KEY {
                return Err(at(format!(
                    "{user}'s blocklist: the list name {:?} and the user are together longer \
                     than the {MAX_KEY} bytes storage allows",
                    privacy::BLOCKLIST_NAME
                )));
            }
        }
        let new = privacy::with_blocked(base.map(|i| &data.lists[i]), &read.jids);
        let blocked = privacy::block_count(&new);
        if blocked > bounds.max_blocked {
            return Err(at(format!(
                "{user}'s blocklist: privacy list {:?} would block {blocked} JIDs, more than {} \
                 (--max-blocklist-items)",
                new.name, bounds.max_blocked
            )));
        }
        data.default = Some(new.name.clone());
        match base {
            Some(i) => data.lists[i] = new,
            None => data.lists.push(new),
        }
        Ok(())
    }
}

/// A user's `<blocklist xmlns='urn:xmpp:blocking'/>` being read.
struct BlockRead {
    /// The line of the (first) `<blocklist>`.
    line: usize,
    /// The distinct JIDs, normalized, in file order.
    jids: Vec<String>,
    seen: HashSet<String>,
}

/// A user's `<query xmlns='jabber:iq:privacy'/>` being read.
#[derive(Default)]
struct PrivacyRead {
    /// The lists with items, each with the line of its `<list>`.
    lists: Vec<(PrivacyList, usize)>,
    /// The names of the empty lists (skipped).
    empty: Vec<String>,
    /// `<default name=''/>` and its line.
    default: Option<(String, usize)>,
}

impl PrivacyRead {
    fn has(&self, name: &str) -> bool {
        self.lists.iter().any(|(l, _)| l.name == name) || self.empty.iter().any(|n| n == name)
    }
}

/// A user's roster being read: items in file order, with a duplicate check.
#[derive(Default)]
struct ItemSet {
    items: Vec<RosterItem>,
    contacts: HashSet<String>,
}

impl ItemSet {
    fn push(&mut self, item: RosterItem) -> Result<(), String> {
        if !self.contacts.insert(item.jid.clone()) {
            return Err(format!("{} is in the roster twice", item.jid));
        }
        self.items.push(item);
        Ok(())
    }
}

/// Users from either format, in file order.
enum Source<'a> {
    Pie(Box<PieReader<'a>>),
    List(ListReader<'a>),
}

impl<'a> Source<'a> {
    fn new(format: ImportFormat, text: &'a str, checks: &'a Checks<'a>) -> Source<'a> {
        match format {
            ImportFormat::Xep0227 => Source::Pie(Box::new(PieReader::new(text, checks))),
            ImportFormat::List => Source::List(ListReader::new(text, checks)),
        }
    }

    /// What was skipped, for the warning line (empty if nothing).
    fn warnings(&self) -> String {
        match self {
            Source::Pie(p) => p.warnings(),
            Source::List(_) => String::new(),
        }
    }
}

impl Iterator for Source<'_> {
    type Item = Result<UserRecord, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Source::Pie(p) => p.next(),
            Source::List(l) => l.next(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The list format.

/// `user@domain password [contact@domain,...]`, one user per line.
struct ListReader<'a> {
    lines: std::iter::Enumerate<std::str::Lines<'a>>,
    checks: &'a Checks<'a>,
}

impl<'a> ListReader<'a> {
    fn new(text: &'a str, checks: &'a Checks<'a>) -> ListReader<'a> {
        ListReader {
            lines: text.lines().enumerate(),
            checks,
        }
    }

    fn parse(&self, line: usize, text: &str) -> Result<UserRecord, FileError> {
        let at = |msg: String| FileError::new(line, msg);
        let mut fields = text.split_whitespace();
        let (Some(jid), Some(password), contacts, None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(at(
                "expected `user@domain password [contact@domain,...]`".to_string()
            ));
        };
        let jid = self.checks.user_jid(jid).map_err(at)?;
        self.checks.password(&jid, password).map_err(at)?;
        let mut items = ItemSet::default();
        for contact in contacts.unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            let contact = self.checks.contact(&jid, contact).map_err(at)?;
            items
                .push(RosterItem {
                    jid: contact,
                    name: None,
                    groups: Vec::new(),
                    subscription: Subscription::Both,
                    ask: false,
                    approved: false,
                })
                .map_err(at)?;
        }
        let rec = UserRecord {
            jid,
            line,
            password: password.to_owned(),
            items: items.items,
            vcard: None,
            privacy: None,
        };
        self.checks.items(&rec).map_err(at)?;
        Ok(rec)
    }
}

impl Iterator for ListReader<'_> {
    type Item = Result<UserRecord, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (i, raw) = self.lines.next()?;
            let text = raw.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            return Some(self.parse(i + 1, text));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// XEP-0227.

/// Where an open element sits in the XEP-0227 structure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// `<server-data/>`.
    ServerData,
    /// `<host jid=''/>`.
    Host,
    /// `<user name='' password=''/>`.
    User,
    /// The user's `<query xmlns='jabber:iq:roster'/>`.
    Roster,
    /// A roster `<item/>`.
    Item,
    /// An item's `<group/>`.
    Group,
    /// The user's vCard, starting at this byte offset.
    Vcard(usize),
    /// The user's `<query xmlns='jabber:iq:privacy'/>`.
    Privacy,
    /// A privacy `<list/>`, starting at this line (built as an element).
    PrivacyList(usize),
    /// The user's `<blocklist xmlns='urn:xmpp:blocking'/>` (XEP-0191, as Prosody exports it).
    Blocklist,
    /// An item of a privacy list (1) or an item's child (2), built as an element; what is
    /// deeper means nothing to XEP-0016 and is skipped (so no element nests deeply).
    PrivacyPart(u8),
    /// `<offline-messages/>`: each child is a skipped message.
    Offline,
    /// Inside something skipped or copied whole.
    Opaque,
}

/// An element whose end tag has not been seen.
struct Open<'a> {
    prefix: &'a str,
    local: &'a str,
    place: Place,
    /// How many namespace bindings were in scope before this element.
    bindings: usize,
}

/// A start tag being read (its attributes come as separate tokens).
struct StartTag<'a> {
    prefix: &'a str,
    local: &'a str,
    start: usize,
    attrs: Vec<(&'a str, &'a str, &'a str)>,
}

/// Streaming reader of XEP-0227 over xmlparser tokens: yields a user at each `</user>`.
struct PieReader<'a> {
    text: &'a str,
    tokens: Tokenizer<'a>,
    checks: &'a Checks<'a>,
    lines: LineCounter<'a>,
    stack: Vec<Open<'a>>,
    /// In-scope namespace bindings, innermost last; the prefix "" is the default namespace.
    bindings: Vec<(&'a str, String)>,
    tag: Option<StartTag<'a>>,
    seen_root: bool,
    host: Option<String>,
    user: Option<(UserRecord, ItemSet)>,
    item: Option<RosterItem>,
    group: String,
    /// The user's privacy element, once seen.
    privacy: Option<PrivacyRead>,
    /// The user's blocklist element, once seen.
    blocklist: Option<BlockRead>,
    /// The privacy `<list/>` being read and its open descendants, innermost last.
    building: Vec<Element>,
    /// Empty privacy lists skipped: how many, and the first (user, name, line).
    empty_lists: usize,
    first_empty: Option<(String, String, usize)>,
    /// Skipped elements by `{ns}name`, and skipped offline messages.
    skipped: BTreeMap<String, usize>,
    offline: usize,
    /// vCards that are not simple enough to store (by the server's own element parser).
    bad_vcards: usize,
    done: bool,
}

impl<'a> PieReader<'a> {
    fn new(text: &'a str, checks: &'a Checks<'a>) -> PieReader<'a> {
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        PieReader {
            text: body,
            tokens: Tokenizer::from(body),
            checks,
            lines: LineCounter::new(body),
            stack: Vec::new(),
            bindings: Vec::new(),
            tag: None,
            seen_root: false,
            host: None,
            user: None,
            item: None,
            group: String::new(),
            privacy: None,
            blocklist: None,
            building: Vec::new(),
            empty_lists: 0,
            first_empty: None,
            skipped: BTreeMap::new(),
            offline: 0,
            bad_vcards: 0,
            done: false,
        }
    }

    fn warnings(&self) -> String {
        let mut parts = Vec::new();
        if self.offline > 0 {
            parts.push(format!("skipped {} offline messages", self.offline));
        }
        if let Some((user, name, line)) = &self.first_empty {
            parts.push(format!(
                "skipped {} empty privacy lists (they filter nothing; a default naming one is \
                 not set), the first {user}'s {name:?} at line {line}",
                self.empty_lists
            ));
        }
        if self.bad_vcards > 0 {
            parts.push(format!(
                "skipped {} vCards the server could not serve back",
                self.bad_vcards
            ));
        }
        if !self.skipped.is_empty() {
            let total: usize = self.skipped.values().sum();
            let kinds: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} x{n}"))
                .collect();
            parts.push(format!(
                "skipped {total} unsupported elements ({})",
                kinds.join(", ")
            ));
        }
        parts.join("; ")
    }

    /// Reads tokens until a user is complete, an error, or the end.
    fn step(&mut self) -> Result<Option<UserRecord>, FileError> {
        loop {
            let token = match self.tokens.next() {
                None => return self.at_end().map(|()| None),
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    return Err(FileError::new(
                        e.pos().row as usize,
                        format!("malformed XML: {e}"),
                    ))
                }
            };
            match token {
                Token::ElementStart {
                    prefix,
                    local,
                    span,
                } => {
                    if self.seen_root && self.stack.is_empty() {
                        let line = self.lines.at(span.start());
                        return Err(FileError::new(line, "a second root element"));
                    }
                    self.tag = Some(StartTag {
                        prefix: prefix.as_str(),
                        local: local.as_str(),
                        start: span.start(),
                        attrs: Vec::new(),
                    });
                }
                Token::Attribute {
                    prefix,
                    local,
                    value,
                    span,
                } => {
                    let tag = self.tag.as_mut().ok_or_else(|| {
                        FileError::new(self.lines.at(span.start()), "attribute outside a tag")
                    })?;
                    let (p, l) = (prefix.as_str(), local.as_str());
                    if tag.attrs.iter().any(|(ap, al, _)| *ap == p && *al == l) {
                        let line = self.lines.at(span.start());
                        return Err(FileError::new(line, format!("duplicate attribute {l:?}")));
                    }
                    tag.attrs.push((p, l, value.as_str()));
                }
                Token::ElementEnd { end, span } => match end {
                    ElementEnd::Open => self.open()?,
                    ElementEnd::Empty => {
                        self.open()?;
                        if let Some(user) = self.close(span.end())? {
                            return Ok(Some(user));
                        }
                    }
                    ElementEnd::Close(prefix, local) => {
                        let line = self.lines.at(span.start());
                        match self.stack.last() {
                            Some(o) if o.prefix == prefix.as_str() && o.local == local.as_str() => {
                            }
                            Some(o) => {
                                return Err(FileError::new(
                                    line,
                                    format!(
                                        "</{}> does not close <{}>",
                                        qname(prefix.as_str(), local.as_str()),
                                        qname(o.prefix, o.local)
                                    ),
                                ))
                            }
                            None => return Err(FileError::new(line, "end tag without start")),
                        }
                        if let Some(user) = self.close(span.end())? {
                            return Ok(Some(user));
                        }
                    }
                },
                Token::Text { text } => self.text(text.as_str(), text.start())?,
                Token::Cdata { text, .. } => {
                    if self.stack.last().map(|o| o.place) == Some(Place::Group) {
                        self.group.push_str(text.as_str());
                    }
                }
                Token::DtdStart { span, .. }
                | Token::EmptyDtd { span, .. }
                | Token::EntityDeclaration { span, .. } => {
                    let line = self.lines.at(span.start());
                    return Err(FileError::new(
                        line,
                        "document type declarations are refused",
                    ));
                }
                Token::Declaration { .. }
                | Token::ProcessingInstruction { .. }
                | Token::Comment { .. }
                | Token::DtdEnd { .. } => {}
            }
        }
    }

    fn at_end(&mut self) -> Result<(), FileError> {
        let line = self.lines.at(self.text.len());
        if let Some(o) = self.stack.last() {
            return Err(FileError::new(
                line,
                format!("the file ends inside <{}>", qname(o.prefix, o.local)),
            ));
        }
        if !self.seen_root {
            return Err(FileError::new(line, "no <server-data/> element"));
        }
        Ok(())
    }

    /// A complete start tag: bind its namespaces, then act on where it sits.
    fn open(&mut self) -> Result<(), FileError> {
        let Some(tag) = self.tag.take() else {
            return Ok(());
        };
        let line = self.lines.at(tag.start);
        let at = |msg: String| FileError::new(line, msg);
        let outer = self.bindings.len();
        for (prefix, local, value) in &tag.attrs {
            let bound = match (*prefix, *local) {
                ("", "xmlns") => "",
                ("xmlns", p) => p,
                _ => continue,
            };
            let uri = xml::unescape(value).map_err(|e| at(format!("xmlns: {e}")))?;
            self.bindings.push((bound, uri.into_owned()));
        }
        let ns = self.resolve(tag.prefix).ok_or_else(|| {
            at(format!(
                "undeclared namespace prefix {:?}",
                tag.prefix.to_string()
            ))
        })?;
        let attr = |name: &str| -> Result<Option<std::borrow::Cow<'a, str>>, FileError> {
            match tag
                .attrs
                .iter()
                .find(|(p, l, _)| p.is_empty() && *l == name)
            {
                Some((_, _, v)) => xml::unescape(v)
                    .map(Some)
                    .map_err(|e| FileError::new(line, format!("attribute {name}: {e}"))),
                None => Ok(None),
            }
        };
        let parent = self.stack.last().map(|o| o.place);
        let name = (ns.as_str(), tag.local);
        let place = match (parent, name) {
            (None, (NS_PIE, "server-data")) => {
                self.seen_root = true;
                Place::ServerData
            }
            (None, _) => {
                return Err(at(format!(
                    "the root element is <{}> in {ns:?}, not <server-data xmlns='{NS_PIE}'>",
                    tag.local
                )))
            }
            (Some(Place::ServerData), (NS_PIE, "host")) => {
                let jid = attr("jid")?.ok_or_else(|| at("<host/> without jid".into()))?;
                self.host = Some(self.checks.host(&jid).map_err(at)?);
                Place::Host
            }
            (Some(Place::Host), (NS_PIE, "user")) => {
                let host = self.host.as_deref().unwrap_or_default();
                let name = attr("name")?.ok_or_else(|| at("<user/> without name".into()))?;
                let jid = self.checks.user(&name, host).map_err(at)?;
                let password = attr("password")?
                    .ok_or_else(|| at(format!("{jid} has no password attribute")))?;
                self.checks.password(&jid, &password).map_err(at)?;
                let rec = UserRecord {
                    jid,
                    line,
                    password: password.into_owned(),
                    items: Vec::new(),
                    vcard: None,
                    privacy: None,
                };
                self.user = Some((rec, ItemSet::default()));
                self.privacy = None;
                self.blocklist = None;
                Place::User
            }
            (Some(Place::User), (NS_ROSTER, "query")) => Place::Roster,
            (Some(Place::User), (NS_VCARD, "vCard")) => Place::Vcard(tag.start),
            (Some(Place::User), (NS_PRIVACY, "query")) => {
                self.privacy.get_or_insert_with(PrivacyRead::default);
                Place::Privacy
            }
            (Some(Place::Privacy), (NS_PRIVACY, "list")) => {
                self.building = vec![element(&tag, &ns, line)?];
                Place::PrivacyList(line)
            }
            (Some(Place::PrivacyList(_)), _) => {
                self.building.push(element(&tag, &ns, line)?);
                Place::PrivacyPart(1)
            }
            (Some(Place::PrivacyPart(1)), _) => {
                self.building.push(element(&tag, &ns, line)?);
                Place::PrivacyPart(2)
            }
            (Some(Place::PrivacyPart(_)), _) => Place::Opaque,
            (Some(Place::Privacy), (NS_PRIVACY, "default")) => {
                if let Some(name) = attr("name")? {
                    let p = self.privacy.get_or_insert_with(PrivacyRead::default);
                    if p.default.is_some() {
                        return Err(at("a second <default/> privacy list".into()));
                    }
                    p.default = Some((name.into_owned(), line));
                }
                Place::Opaque
            }
            (Some(Place::User), (NS_BLOCKING, "blocklist")) => {
                self.blocklist.get_or_insert_with(|| BlockRead {
                    line,
                    jids: Vec::new(),
                    seen: HashSet::new(),
                });
                Place::Blocklist
            }
            (Some(Place::Blocklist), (NS_BLOCKING, "item")) => {
                let user = self
                    .user
                    .as_ref()
                    .map(|u| u.0.jid.as_str())
                    .unwrap_or_default();
                let raw = attr("jid")?
                    .ok_or_else(|| at(format!("{user}'s blocklist: an <item/> without jid")))?;
                let j = self.checks.blocked_jid(user, &raw).map_err(at)?;
                let max = self.checks.config.modules.privacy.max_blocked;
                if let Some(b) = self.blocklist.as_mut() {
                    if b.seen.insert(j.clone()) {
                        b.jids.push(j);
                        if b.jids.len() > max {
                            return Err(at(format!(
                                "{user}'s blocklist blocks more than {max} JIDs \
                                 (--max-blocklist-items)"
                            )));
                        }
                    }
                }
                Place::Opaque
            }
            // Which list a session uses: nothing to import without sessions.
            (Some(Place::Privacy), (NS_PRIVACY, "active")) => Place::Opaque,
            (Some(Place::User), (NS_PIE, "offline-messages")) => Place::Offline,
            (Some(Place::Roster), (NS_ROSTER, "item")) => {
                let user = self.user.as_ref().map(|u| u.0.jid.as_str());
                let contact = attr("jid")?.ok_or_else(|| at("<item/> without jid".into()))?;
                let contact = self
                    .checks
                    .contact(user.unwrap_or_default(), &contact)
                    .map_err(at)?;
                let subscription = match attr("subscription")?.as_deref() {
                    None | Some("none") => Subscription::None,
                    Some("to") => Subscription::To,
                    Some("from") => Subscription::From,
                    Some("both") => Subscription::Both,
                    Some(other) => return Err(at(format!("unknown subscription {other:?}"))),
                };
                let ask = match attr("ask")?.as_deref() {
                    None => false,
                    Some("subscribe") => true,
                    Some(other) => return Err(at(format!("unknown ask {other:?}"))),
                };
                let approved = matches!(attr("approved")?.as_deref(), Some("true" | "1"));
                let name = attr("name")?
                    .filter(|n| !n.is_empty())
                    .map(|n| n.into_owned());
                if let Some(n) = &name {
                    self.checks.text("item name", n).map_err(at)?;
                }
                self.item = Some(RosterItem {
                    jid: contact,
                    name,
                    groups: Vec::new(),
                    subscription,
                    ask,
                    approved,
                });
                Place::Item
            }
            (Some(Place::Item), (NS_ROSTER, "group")) => {
                self.group.clear();
                Place::Group
            }
            (Some(Place::Offline), _) => {
                self.offline += 1;
                Place::Opaque
            }
            (Some(Place::Vcard(_) | Place::Opaque), _) => Place::Opaque,
            (Some(_), (ns, local)) => {
                *self.skipped.entry(format!("{{{ns}}}{local}")).or_default() += 1;
                Place::Opaque
            }
        };
        self.stack.push(Open {
            prefix: tag.prefix,
            local: tag.local,
            place,
            bindings: outer,
        });
        Ok(())
    }

    /// The end of the innermost element, whose end tag ends at byte `end`.
    fn close(&mut self, end: usize) -> Result<Option<UserRecord>, FileError> {
        let Some(open) = self.stack.pop() else {
            return Ok(None);
        };
        self.bindings.truncate(open.bindings);
        let line = self.lines.last();
        let at = |msg: String| FileError::new(line, msg);
        match open.place {
            Place::Group => {
                let group = std::mem::take(&mut self.group);
                if let Some(item) = self.item.as_mut() {
                    if group.is_empty() {
                        return Err(at("empty <group/>".into()));
                    }
                    self.checks.text("group name", &group).map_err(at)?;
                    if item.groups.contains(&group) {
                        return Err(at(format!("group {group:?} twice on {}", item.jid)));
                    }
                    item.groups.push(group);
                    let max = self.checks.config.modules.roster.max_roster_groups;
                    if item.groups.len() > max {
                        return Err(at(format!(
                            "{} is in more than {max} groups (--max-roster-groups)",
                            item.jid
                        )));
                    }
                }
            }
            Place::Item => {
                if let (Some(item), Some((_, items))) = (self.item.take(), self.user.as_mut()) {
                    items.push(item).map_err(at)?;
                }
            }
            Place::Vcard(start) => {
                let raw = self.text.get(start..end).unwrap_or_default();
                match self.vcard(raw) {
                    Some(bytes) => {
                        if let Some((rec, _)) = self.user.as_mut() {
                            rec.vcard = Some(bytes);
                        }
                    }
                    None => self.bad_vcards += 1,
                }
            }
            Place::User => {
                if let Some((mut rec, items)) = self.user.take() {
                    rec.items = items.items;
                    self.checks
                        .items(&rec)
                        .map_err(|m| FileError::new(rec.line, m))?;
                    let (read, block) = (self.privacy.take(), self.blocklist.take());
                    if read.is_some() || block.is_some() {
                        let mut data = match read {
                            Some(read) => self.checks.privacy(&rec, read)?,
                            None => PrivacyData::default(),
                        };
                        if let Some(block) = block {
                            self.checks.blocklist(&rec.jid, &mut data, block)?;
                        }
                        rec.privacy = Some(data);
                    }
                    return Ok(Some(rec));
                }
            }
            Place::PrivacyPart(_) => {
                if let (Some(el), Some(parent)) = (self.building.pop(), self.building.last_mut()) {
                    parent.push_child(el);
                }
            }
            Place::PrivacyList(start) => {
                let el = self
                    .building
                    .pop()
                    .unwrap_or_else(|| Element::new("list", NS_PRIVACY));
                self.building.clear();
                let user = self
                    .user
                    .as_ref()
                    .map(|u| u.0.jid.clone())
                    .unwrap_or_default();
                let list = self
                    .checks
                    .privacy_list(&user, &el)
                    .map_err(|m| FileError::new(start, m))?;
                let p = self.privacy.get_or_insert_with(PrivacyRead::default);
                if p.has(&list.name) {
                    return Err(FileError::new(
                        start,
                        format!("{user} has two privacy lists named {:?}", list.name),
                    ));
                }
                if list.items.is_empty() {
                    self.empty_lists += 1;
                    self.first_empty
                        .get_or_insert_with(|| (user, list.name.clone(), start));
                    p.empty.push(list.name);
                } else {
                    p.lists.push((list, start));
                }
            }
            Place::Host => self.host = None,
            Place::ServerData
            | Place::Roster
            | Place::Privacy
            | Place::Blocklist
            | Place::Offline
            | Place::Opaque => {}
        }
        Ok(None)
    }

    /// The vCard as the vCard module stores it, if the server's element parser accepts it on
    /// its own (no prefixes declared outside it) and it fits --max-vcard-size.
    fn vcard(&self, raw: &str) -> Option<Vec<u8>> {
        let config = self.checks.config;
        let el = xml::parse_element(
            raw.as_bytes(),
            &StreamNs::new(ns::CLIENT),
            &config.xml_limits(),
        )
        .ok()?;
        if !el.is("vCard", NS_VCARD) {
            return None;
        }
        let mut bytes = Vec::new();
        el.write_to(&mut bytes, "");
        (bytes.len() <= config.modules.vcard.max_vcard_size).then_some(bytes)
    }

    fn text(&mut self, text: &str, start: usize) -> Result<(), FileError> {
        if self.stack.last().map(|o| o.place) == Some(Place::Group) {
            let t = xml::unescape(text)
                .map_err(|e| FileError::new(self.lines.at(start), format!("{e}")))?;
            self.group.push_str(&t);
        }
        Ok(())
    }

    /// The namespace bound to `prefix` (the default namespace for "").
    fn resolve(&self, prefix: &str) -> Option<String> {
        if prefix == "xml" {
            return Some(xml::NS_XML.to_owned());
        }
        match self.bindings.iter().rev().find(|(p, _)| *p == prefix) {
            Some((_, uri)) => Some(uri.clone()),
            None if prefix.is_empty() => Some(String::new()),
            None => None,
        }
    }
}

impl Iterator for PieReader<'_> {
    type Item = Result<UserRecord, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let out = self.step().transpose();
        if !matches!(out, Some(Ok(_))) {
            self.done = true;
        }
        out
    }
}

/// The element of a start tag inside a privacy list, for the privacy module's parser: its
/// namespace and unprefixed attributes (what `jabber:iq:privacy` uses).
fn element(tag: &StartTag<'_>, ns: &str, line: usize) -> Result<Element, FileError> {
    let mut el = Element::new(tag.local, ns);
    for (prefix, local, value) in &tag.attrs {
        if prefix.is_empty() && *local != "xmlns" {
            let v = xml::unescape(value)
                .map_err(|e| FileError::new(line, format!("attribute {local}: {e}")))?;
            el.set_attr(local, v.into_owned());
        }
    }
    Ok(el)
}

fn qname(prefix: &str, local: &str) -> String {
    if prefix.is_empty() {
        local.to_owned()
    } else {
        format!("{prefix}:{local}")
    }
}

/// Line numbers of byte offsets that only move forward, counted incrementally.
struct LineCounter<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> LineCounter<'a> {
        LineCounter {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// The line of byte offset `pos` (not before the last one asked).
    fn at(&mut self, pos: usize) -> usize {
        if pos > self.pos {
            let seen = self.text.as_bytes().get(self.pos..pos).unwrap_or_default();
            self.line += seen.iter().filter(|b| **b == b'\n').count();
            self.pos = pos;
        }
        self.line
    }

    /// The line of the last offset asked.
    fn last(&self) -> usize {
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let cli = <crate::config::Cli as clap::Parser>::try_parse_from(["xmppd"]).unwrap();
        Config::resolve(&cli.common, &cli.serve).unwrap()
    }

    fn read(format: ImportFormat, text: &str) -> Result<Vec<UserRecord>, FileError> {
        let config = config();
        let checks = Checks { config: &config };
        Source::new(format, text, &checks).collect()
    }

    /// Each `(file text, line, message)` fails to read with that message at that line.
    fn assert_errors(cases: &[(String, usize, &str)]) {
        for (text, line, msg) in cases {
            let e = read(ImportFormat::Xep0227, text).err().expect(msg);
            assert_eq!(e.line, *line, "{}", e.msg);
            assert!(e.msg.contains(msg), "{}", e.msg);
        }
    }

    /// The error reading `text` with the server's bounds changed by `f`.
    fn over_bound(text: &str, f: &dyn Fn(&mut Config)) -> FileError {
        let mut bounds = config();
        f(&mut bounds);
        let checks = Checks { config: &bounds };
        let r: Result<Vec<UserRecord>, FileError> =
            Source::new(ImportFormat::Xep0227, text, &checks).collect();
        r.err().expect("over a bound")
    }

    const PIE: &str = "<?xml version='1.0'?>\n\
        <server-data xmlns='urn:xmpp:pie:0'>\n\
          <host jid='LocalHost'>\n\
            <user name='Alice' password='a&amp;b'>\n\
              <query xmlns='jabber:iq:roster'>\n\
                <item jid='bob@localhost' name='Bob' subscription='both'>\
                  <group>Friends</group><group><![CDATA[W&rk]]></group></item>\n\
                <item jid='carol@example.org' subscription='to' ask='subscribe'/>\n\
              </query>\n\
              <vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>\n\
              <offline-messages><message xmlns='jabber:client'><body>x</body></message>\
              </offline-messages>\n\
              <private xmlns='urn:xmpp:private:0'/>\n\
            </user>\n\
            <user name='bob' password='pw'/>\n\
          </host>\n\
        </server-data>\n";

    #[test]
    fn pie_users_rosters_vcards_and_skips() {
        let config = config();
        let checks = Checks { config: &config };
        let mut src = Source::new(ImportFormat::Xep0227, PIE, &checks);
        let users: Vec<UserRecord> = src.by_ref().map(Result::unwrap).collect();
        assert_eq!(users.len(), 2);
        let a = &users[0];
        assert_eq!(
            (a.jid.as_str(), a.line, a.password.as_str()),
            ("alice@localhost", 4, "a&b")
        );
        assert_eq!(a.items.len(), 2);
        assert_eq!(a.items[0].name.as_deref(), Some("Bob"));
        assert_eq!(a.items[0].groups, ["Friends", "W&rk"]);
        assert_eq!(a.items[0].subscription, Subscription::Both);
        assert!(a.items[1].ask && a.items[1].subscription == Subscription::To);
        let card = String::from_utf8(a.vcard.clone().unwrap()).unwrap();
        assert!(card.contains("<FN>Alice</FN>"), "{card}");
        assert_eq!(users[1].jid, "bob@localhost");
        let w = src.warnings();
        assert!(w.contains("1 offline messages"), "{w}");
        assert!(w.contains("{urn:xmpp:private:0}private x1"), "{w}");
    }

    #[test]
    fn pie_errors_name_their_line() {
        let cases = [
            (PIE.replace("</user>\n", "</usr>\n"), 12, "does not close"),
            (
                PIE.replace("LocalHost", "example.org"),
                3,
                "host example.org is not served",
            ),
            (PIE.replace("bob@localhost", "bob@@x"), 6, "not a valid JID"),
            (
                PIE.replace("subscription='to'", "subscription='x'"),
                7,
                "unknown subscription",
            ),
            (
                PIE.replace("name='bob' password='pw'", "name='bob'"),
                13,
                "no password",
            ),
            (PIE.replace("</server-data>\n", ""), 15, "ends inside"),
            (
                PIE.replace("<group>Friends</group>", "<group/>"),
                6,
                "empty <group/>",
            ),
        ];
        assert_errors(&cases);
    }

    const PIE_PRIVACY: &str = "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\n\
        <user name='alice' password='pw'>\n\
          <p:query xmlns:p='jabber:iq:privacy'>\n\
            <p:active name='l'/><p:default name='l'/>\n\
            <p:list name='l'>\n\
              <p:item type='group' value='Friends' action='allow' order='9'><p:message><a><b/></a></p:message></p:item>\n\
              <p:item type='jid' value='Bob@LocalHost' action='deny' order='2'/>\n\
            </p:list>\n\
            <p:list name='empty'/>\n\
            <p:unknown/>\n\
          </p:query>\n\
          <query xmlns='jabber:iq:roster'>\n\
            <item jid='carol@localhost'><group>Friends</group></item>\n\
          </query>\n\
        </user>\n\
        </host></server-data>\n";

    #[test]
    fn pie_privacy_lists() {
        let config = config();
        let checks = Checks { config: &config };
        let mut src = Source::new(ImportFormat::Xep0227, PIE_PRIVACY, &checks);
        let users: Vec<UserRecord> = src.by_ref().map(Result::unwrap).collect();
        let p = users[0].privacy.as_ref().expect("privacy");
        assert_eq!(p.default.as_deref(), Some("l"));
        assert_eq!(p.lists.len(), 1, "the empty list is skipped");
        let l = &p.lists[0];
        let orders: Vec<u32> = l.items.iter().map(|i| i.order).collect();
        assert_eq!(orders, [2, 9]);
        assert_eq!(l.items[0].what, PrivacyMatch::Jid("bob@localhost".into()));
        assert_eq!(l.items[1].what, PrivacyMatch::Group("Friends".into()));
        assert_ne!(l.items[1].stanzas, 0);
        let w = src.warnings();
        assert!(
            w.contains("skipped 1 empty privacy lists")
                && w.contains("alice@localhost's \"empty\" at line 9"),
            "{w}"
        );
        assert!(w.contains("{jabber:iq:privacy}unknown x1"), "{w}");
        // The default naming the empty list: no default.
        let text = PIE_PRIVACY.replace("<p:default name='l'/>", "<p:default name='empty'/>");
        let users = read(ImportFormat::Xep0227, &text).unwrap();
        assert_eq!(users[0].privacy.as_ref().unwrap().default, None);
        // No privacy element: None (--replace leaves the lists alone).
        assert!(read(ImportFormat::Xep0227, PIE).unwrap()[0]
            .privacy
            .is_none());

        let cases = [
            (
                PIE_PRIVACY.replace("order='9'", "order='2'"),
                5,
                "alice@localhost's privacy list \"l\": order 2 appears twice (bad-request)",
            ),
            (
                PIE_PRIVACY.replace("action='deny'", ""),
                5,
                "needs action='allow' or action='deny' (bad-request)",
            ),
            (
                PIE_PRIVACY.replace("<group>Friends</group>", "<group>Foes</group>"),
                5,
                "no roster group \"Friends\" in the user's roster (item-not-found)",
            ),
            (
                PIE_PRIVACY.replace("<p:default name='l'/>", "<p:default name='m'/>"),
                4,
                "default privacy list \"m\" is not one of its lists",
            ),
            (
                PIE_PRIVACY.replace("name='empty'", "name='l'"),
                9,
                "alice@localhost has two privacy lists named \"l\"",
            ),
            (
                PIE_PRIVACY.replace(
                    "<p:default name='l'/>",
                    "<p:default name='l'/><p:default name='l'/>",
                ),
                4,
                "a second <default/>",
            ),
        ];
        assert_errors(&cases);

        // The server's bounds.
        let bounded = |f: &dyn Fn(&mut Config)| over_bound(PIE_PRIVACY, f).msg;
        // The group item is a rule; the jid deny item a blocklist entry.
        let m = bounded(&|c| c.modules.privacy.max_items = 0);
        assert!(
            m.contains("has 1 rules, more than 0 (--max-privacy-items)"),
            "{m}"
        );
        let m = bounded(&|c| c.modules.privacy.max_blocked = 0);
        assert!(
            m.contains("blocks 1 JIDs, more than 0 (--max-blocklist-items)"),
            "{m}"
        );
        let m = bounded(&|c| c.modules.privacy.max_lists = 0);
        assert!(
            m.contains("alice@localhost has 1 privacy lists, more than 0 (--max-privacy-lists)"),
            "{m}"
        );
    }

    /// Prosody's export of a blocklist, after (bob) or before (alice) a privacy element.
    const PIE_BLOCKLIST: &str = "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\n\
        <user name='bob' password='pw'>\n\
          <blocklist xmlns='urn:xmpp:blocking'>\n\
            <item jid='Mallory@LocalHost'/>\n\
            <item jid='evil.example'/>\n\
            <item jid='mallory@localhost'/>\n\
          </blocklist>\n\
        </user>\n\
        <user name='alice' password='pw'>\n\
          <b:blocklist xmlns:b='urn:xmpp:blocking'><b:item jid='eve@localhost'/>\
            <b:item jid='x@localhost'/></b:blocklist>\n\
          <query xmlns='jabber:iq:privacy'>\n\
            <default name='d'/>\n\
            <list name='d'><item type='jid' value='x@localhost' action='deny' order='5'/>\
              <item type='jid' value='y@localhost' action='deny' order='6'/>\
              <item action='allow' order='7'/></list>\n\
            <list name='other'><item action='deny' order='1'/></list>\n\
          </query>\n\
        </user>\n\
        <user name='carol' password='pw'><blocklist xmlns='urn:xmpp:blocking'/></user>\n\
        </host></server-data>\n";

    #[test]
    fn pie_blocklist() {
        let users = read(ImportFormat::Xep0227, PIE_BLOCKLIST).unwrap();
        let jids = |l: &PrivacyList| -> Vec<String> {
            l.items
                .iter()
                .map(|i| match &i.what {
                    PrivacyMatch::Jid(j) if i.is_block() => j.clone(),
                    _ => "-".into(),
                })
                .collect()
        };
        // No default list: a new default urn:xmpp:blocking one, duplicates collapsed.
        let bob = users[0].privacy.as_ref().expect("bob's privacy");
        assert_eq!(bob.default.as_deref(), Some(privacy::BLOCKLIST_NAME));
        assert_eq!(bob.lists.len(), 1);
        assert_eq!(bob.lists[0].name, privacy::BLOCKLIST_NAME);
        assert_eq!(jids(&bob.lists[0]), ["mallory@localhost", "evil.example"]);
        // The default list of the privacy element, which comes after: the blocked JIDs first
        // (x@localhost was already blocked), orders renumbered, the other list untouched.
        let alice = users[1].privacy.as_ref().expect("alice's privacy");
        assert_eq!(alice.default.as_deref(), Some("d"));
        assert_eq!(alice.lists.len(), 2);
        let d = &alice.lists[0];
        assert_eq!(d.name, "d");
        assert_eq!(
            jids(d),
            ["eve@localhost", "x@localhost", "y@localhost", "-"]
        );
        let orders: Vec<u32> = d.items.iter().map(|i| i.order).collect();
        assert_eq!(orders, [0, 1, 2, 3]);
        assert_eq!(alice.lists[1].items.len(), 1);
        // An empty blocklist imports nothing but is privacy data (for --replace).
        let carol = users[2].privacy.as_ref().expect("carol's privacy");
        assert!(carol.lists.is_empty() && carol.default.is_none());

        let cases = [
            (
                PIE_BLOCKLIST.replace("evil.example", "a@b@c"),
                5,
                "bob@localhost's blocklist: \"a@b@c\": ",
            ),
            (
                PIE_BLOCKLIST.replace("<item jid='evil.example'/>", "<item/>"),
                5,
                "bob@localhost's blocklist: an <item/> without jid",
            ),
        ];
        assert_errors(&cases);

        let bounded = |f: &dyn Fn(&mut Config)| over_bound(PIE_BLOCKLIST, f);
        // bob's second distinct JID is one too many.
        let e = bounded(&|c| c.modules.privacy.max_blocked = 1);
        assert_eq!(e.line, 5, "{}", e.msg);
        assert!(
            e.msg.contains(
                "bob@localhost's blocklist blocks more than 1 JIDs (--max-blocklist-items)"
            ),
            "{}",
            e.msg
        );
        // alice's two JIDs fit on their own, and the default list's two, not together (x is
        // counted once).
        let e = bounded(&|c| {
            c.modules.privacy.max_blocked = 2;
            c.modules.privacy.max_lists = 5;
        });
        assert_eq!(e.line, 10, "{}", e.msg);
        assert!(
            e.msg.contains(
                "alice@localhost's blocklist: privacy list \"d\" would block 3 JIDs, more than 2 \
                 (--max-blocklist-items)"
            ),
            "{}",
            e.msg
        );
        // A new list for bob is one list too many.
        let e = bounded(&|c| c.modules.privacy.max_lists = 0);
        assert_eq!(e.line, 3, "{}", e.msg);
        assert!(
            e.msg.contains(
                "bob@localhost's blocklist needs a new privacy list \"urn:xmpp:blocking\": 1 \
                 privacy lists, more than 0 (--max-privacy-lists)"
            ),
            "{}",
            e.msg
        );
    }

    #[test]
    fn list_lines() {
        let text = "# comment\n\nA@localhost pw1 b@localhost,c@localhost\nb@localhost pw2\n";
        let users = read(ImportFormat::List, text).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!((users[0].jid.as_str(), users[0].line), ("a@localhost", 3));
        assert_eq!(users[0].items.len(), 2);
        assert_eq!(users[0].items[1].subscription, Subscription::Both);
        let e = read(ImportFormat::List, "a@localhost pw\nx@localhost/r pw\n")
            .err()
            .unwrap();
        assert_eq!(e.line, 2);
        let e = read(ImportFormat::List, "a@localhost pw b@x,b@x\n")
            .err()
            .unwrap();
        assert!(e.msg.contains("twice"), "{}", e.msg);
        let e = read(ImportFormat::List, "a@localhost\n").err().unwrap();
        assert!(e.msg.contains("expected"), "{}", e.msg);
    }

    #[test]
    fn format_is_detected() {
        assert_eq!(detect("\u{feff}  \n<server-data/>"), ImportFormat::Xep0227);
        assert_eq!(detect("# users\na@b pw"), ImportFormat::List);
    }
}
