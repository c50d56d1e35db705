//! Issue 8, "Abuse before authentication": the namespace cost of one element is bounded.
//!
//! A stanza may have at most 32 namespace prefix declarations in scope at once, and the tree
//! `parse_element` builds from one stanza may own at most 32 × `max_stanza_bytes` (a namespace
//! declared once used to be copied into every element and attribute key below it). Both are
//! refused with the stream error `policy-violation`, before and after authentication.
//!
//! `measure_namespace_cost` (ignored) prints the cost of the worst-case inputs:
//! `cargo test --release --test xml_namespace_cost -- --ignored --nocapture measure`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use common::*;
use xmppd::xml::{parse_element, scan_stanza, Limits, StreamNs};

/// Counts the bytes allocated by the current thread, for the measurement.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the bookkeeping only touches
// thread-locals without destructors and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes allocated at the peak of `f` beyond what was live before it, and its result.
fn peak_of<R>(f: impl FnOnce() -> R) -> (usize, R) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (usize::try_from(peak - before).unwrap_or(0), r)
}

/// A chain of `levels` nested elements with `decls` prefix declarations on the first one
/// (prefix `a`, declared first, and `b1`…) and `decls` on each other one (`b0`…, never `a`),
/// then as many `<a:x/>` as fit in `total` bytes: every child resolves `a` past all the others.
fn deep_prefixes(levels: usize, first: usize, decls: usize, total: usize) -> String {
    let mut s = String::new();
    for level in 0..levels {
        s.push_str("<e");
        let n = if level == 0 { first } else { decls };
        for i in 0..n {
            if level == 0 && i == 0 {
                s.push_str(" xmlns:a='u'");
            } else {
                s.push_str(&format!(" xmlns:b{i}='u'"));
            }
        }
        s.push('>');
    }
    let close = "</e>".repeat(levels);
    let child = "<a:x/>";
    let n = total.saturating_sub(s.len() + close.len()) / child.len();
    s.push_str(&child.repeat(n));
    s.push_str(&close);
    s
}

/// `<m><x xmlns='N…'>` with a namespace of half of `total`, then `<y/>` children (which
/// inherit it) up to `total`.
fn long_default_ns(total: usize) -> String {
    let mut s = format!("<m><x xmlns='urn:{}'>", "n".repeat(total / 2));
    let close = "</x></m>";
    let n = total.saturating_sub(s.len() + close.len()) / 4;
    s.push_str(&"<y/>".repeat(n));
    s.push_str(close);
    s
}

/// `<m xmlns:p='N…'>` with a namespace of half of `total`, then `<y p:a0='' … p:a63=''/>`
/// children up to `total`: 64 attributes in that namespace on each.
fn long_ns_attrs(total: usize) -> String {
    let mut s = format!("<m xmlns:p='urn:{}'>", "n".repeat(total / 2));
    let mut child = String::from("<y");
    for i in 0..64 {
        child.push_str(&format!(" p:a{i}=''"));
    }
    child.push_str("/>");
    let close = "</m>";
    let n = total.saturating_sub(s.len() + close.len()) / child.len();
    s.push_str(&child.repeat(n));
    s.push_str(close);
    s
}

/// Two prefixes bound to namespaces of a quarter of `total` each that differ in their last
/// byte, then children with 32 pairs of attributes `p:aN` / `q:aN`.
fn twin_ns_attrs(total: usize) -> String {
    let long = "n".repeat(total / 4);
    let mut s = format!("<m xmlns:p='urn:{long}1' xmlns:q='urn:{long}2'>");
    let mut child = String::from("<y");
    for i in 0..32 {
        child.push_str(&format!(" p:a{i}='' q:a{i}=''"));
    }
    child.push_str("/>");
    let close = "</m>";
    let n = total.saturating_sub(s.len() + close.len()) / child.len();
    s.push_str(&child.repeat(n));
    s.push_str(close);
    s
}

/// A roster push of `items` items, as a server sends it.
fn roster_push(items: usize) -> String {
    let mut s = String::from(
        "<iq type='set' id='push1' to='romeo@example.net/orchard'><query xmlns='jabber:iq:roster' ver='v42'>",
    );
    for i in 0..items {
        s.push_str(&format!(
            "<item jid='contact{i}@example.org' name='Contact number {i}' subscription='both'>\
             <group>Friends</group><group>Work</group></item>"
        ));
    }
    s.push_str("</query></iq>");
    s
}

fn body_message(bytes: usize) -> String {
    format!(
        "<message to='juliet@example.com' type='chat' id='big'><body>{}</body></message>",
        "x".repeat(bytes)
    )
}

fn fastest<R>(runs: usize, mut f: impl FnMut() -> R) -> (Duration, R) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        last = Some(r);
    }
    (best, last.expect("at least one run"))
}

fn outcome<T>(r: &Result<T, xmppd::xml::XmlError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("refused ({e})"),
    }
}

fn measure(name: &str, raw: &str, ns: &StreamNs, runs: usize) {
    let l = Limits::default();
    assert!(
        raw.len() <= l.max_stanza_bytes,
        "{name}: {} bytes",
        raw.len()
    );
    let (scan_time, scanned) = fastest(runs, || scan_stanza(raw.as_bytes(), ns, &l).map(|_| ()));
    let (parse_time, parsed) = fastest(runs, || parse_element(raw.as_bytes(), ns, &l).map(|_| ()));
    let (peak, _) = peak_of(|| parse_element(raw.as_bytes(), ns, &l));
    println!(
        "{name}: {} bytes; scan {:.3} ms, {}; parse {:.3} ms, {}; parse peak {:.1} MB",
        raw.len(),
        scan_time.as_secs_f64() * 1e3,
        outcome(&scanned),
        parse_time.as_secs_f64() * 1e3,
        outcome(&parsed),
        peak as f64 / 1e6,
    );
}

/// Prints the cost of the worst cases (see the module documentation for the command).
#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn measure_namespace_cost() {
    let l = Limits::default();
    let total = l.max_stanza_bytes - 64;
    let client = StreamNs::new("jabber:client");
    let levels = l.max_depth - 1;
    measure(
        "deep prefixes, 64 per level x 63 levels",
        &deep_prefixes(levels, l.max_attrs, l.max_attrs, total),
        &client,
        5,
    );
    measure(
        "deep prefixes, 32 in scope",
        &deep_prefixes(1, 32, 0, total),
        &client,
        5,
    );
    measure(
        "deep prefixes, 1 per level x 32 levels",
        &deep_prefixes(32, 1, 1, total),
        &client,
        5,
    );
    measure(
        "long default namespace",
        &long_default_ns(total),
        &client,
        1,
    );
    measure(
        "long namespace, 64 attributes per child",
        &long_ns_attrs(total),
        &client,
        1,
    );
    measure(
        "two long namespaces, same local names",
        &twin_ns_attrs(total),
        &client,
        1,
    );
    // A prefix of the stream header bound to a long namespace, used by small stanzas.
    let long_header = StreamNs::new("jabber:client").with_prefix("p", &"n".repeat(100_000));
    let mut small = String::from("<m");
    for i in 0..64 {
        small.push_str(&format!(" p:a{i}=''"));
    }
    small.push_str("/>");
    measure(
        "stream-header prefix, 64 attributes",
        &small,
        &long_header,
        5,
    );
    // The same 64 attributes with the namespace declared in the stanza.
    let declared = small
        .replacen("<m", &format!("<m xmlns:p='{}'", "n".repeat(100_000)), 1)
        .replacen(" p:a0=''", "", 1);
    measure(
        "long namespace, one element of 63 attributes",
        &declared,
        &client,
        5,
    );
    // Declarations compared with 63 stream-header names of the same length.
    let mut crowded = StreamNs::new("jabber:client");
    for i in 0..63 {
        crowded = crowded.with_prefix(&format!("h{i}"), &format!("urn:{}{i:02}", "n".repeat(4000)));
    }
    let sibling = format!("<y xmlns:p='urn:{}zz'/>", "n".repeat(4000));
    let siblings = format!("<m>{}</m>", sibling.repeat((total - 16) / sibling.len()));
    measure("declarations like 63 header names", &siblings, &crowded, 5);
    // The largest trees still accepted: a 4 KB namespace inherited by as many elements as the
    // tree may hold, and nothing but empty elements.
    let node = std::mem::size_of::<xmppd::xml::Node>();
    let budget = 32 * l.max_stanza_bytes;
    let ns4k = format!("urn:{}", "n".repeat(4092));
    let fit = budget / (node + 1 + ns4k.len()) - 2;
    let near = format!("<m><x xmlns='{ns4k}'>{}</x></m>", "<y/>".repeat(fit));
    measure("4 KB namespace, largest accepted tree", &near, &client, 5);
    let tiny = format!("<m>{}</m>", "<a/>".repeat((total - 16) / 4));
    measure("empty elements only", &tiny, &client, 5);
    measure("roster push, 1000 items", &roster_push(1000), &client, 5);
    measure("message, 200 KB body", &body_message(200_000), &client, 5);
}

/// An IQ to the server whose ping carries a chain of nested elements declaring `n` prefixes,
/// four on each (the server's default depth limit is 32); the innermost uses the outermost
/// prefix, so all `n` are in scope at once.
fn ping_with_prefixes(id: &str, n: usize) -> String {
    let mut s = format!("<iq type='get' id='{id}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'>");
    let levels = n.div_ceil(4);
    for level in 0..levels {
        s.push_str(&format!("<p{}:x", level * 4));
        for i in level * 4..n.min(level * 4 + 4) {
            s.push_str(&format!(" xmlns:p{i}='urn:test:ns{i}'"));
        }
        s.push('>');
    }
    s.push_str("<p0:y p0:a='1'/>");
    for level in (0..levels).rev() {
        s.push_str(&format!("</p{}:x>", level * 4));
    }
    s.push_str("</ping></iq>");
    s
}

#[test]
fn namespace_declaration_cost_is_bounded_policy_violation() {
    let s = Server::shared();
    let (user, pw) = s.new_user("nscost");
    let mut c = Client::login(s, &user, &pw, None);
    // 32 prefixes in scope: an ordinary stanza, answered.
    c.send(&ping_with_prefixes("ns32", 32));
    let r = c.recv_el();
    assert_eq!(
        (r.attr("type"), r.attr("id")),
        (Some("result"), Some("ns32")),
        "{r:?}"
    );
    // 33: the stream ends.
    c.send(&ping_with_prefixes("ns33", 33));
    c.expect_stream_error("policy-violation");
    assert!(
        c.transcript
            .contains("too many namespace prefixes in scope"),
        "{}",
        c.transcript
    );
}

#[test]
fn element_tree_memory_is_bounded_policy_violation() {
    let s = Server::shared();
    let (user, pw) = s.new_user("nstree");
    let mut c = Client::login(s, &user, &pw, None);
    // A legitimate large stanza to the server is still answered.
    let mut big = format!("<iq type='get' id='big' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'>");
    for i in 0..2000 {
        big.push_str(&format!("<item n='{i}'><v>value {i}</v></item>"));
    }
    big.push_str("</ping></iq>");
    c.send(&big);
    let r = c.recv_el();
    assert_eq!(
        (r.attr("type"), r.attr("id")),
        (Some("result"), Some("big")),
        "{r:?}"
    );
    // A 64 KB namespace declared once and inherited by 16,000 empty children would have been
    // copied into each of them: about 1 GB.
    let long = "n".repeat(64 * 1024);
    let children = "<y/>".repeat(16_000);
    c.send(&format!(
        "<iq type='get' id='amp' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'>\
         <x xmlns='urn:{long}'>{children}</x></ping></iq>"
    ));
    c.expect_stream_error("policy-violation");
    assert!(
        c.transcript.contains("element tree too large"),
        "{}",
        c.transcript
    );
}
