//! Inbound XML cost on a realistic client stream: [`Framer::next`] splitting a stream of 10 000
//! stanzas, fed in reads of 4 KiB and 64 KiB the way `c2s::conn` feeds it (a partial stanza is
//! kept and the next read appended), alone and followed by [`scan_stanza`] on every element as
//! the connection does before dispatch; then [`scan_stanza`] and [`parse_element`] on one stanza
//! of each kind.
//!
//! The mix, per 20 stanzas: 12 chat messages with a body (about 200 B; every fourth with a
//! prefixed chat-state child, every tenth with a prefixed top element, some with entities or
//! non-ASCII text), 5 presences with status and caps (about 300 B), 2 roster gets, 1 roster
//! result with three items.
//!
//! Run with `cargo bench --bench framing`; throughput is reported in bytes and stanzas.

use std::sync::LazyLock;

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use xmppd::xml::{parse_element, scan_stanza, Frame, Framer, Limits, StreamNs};

fn main() {
    divan::main();
}

/// Stanzas in the benchmark stream.
const STANZAS: usize = 10_000;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' \
    xml:lang='en'>";

/// The client stream: header, then [`STANZAS`] stanzas of the mix.
static STREAM: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut s = String::from(HEADER);
    for i in 0..STANZAS {
        s.push_str(&stanza(i));
        if i.is_multiple_of(7) {
            s.push('\n');
        }
    }
    let bytes = s.into_bytes();
    let elements = frame_all(&bytes, 65_536, |_| {});
    assert_eq!(
        elements, STANZAS,
        "the benchmark stream does not frame as built"
    );
    bytes
});

/// Stanza `i` of the mix.
fn stanza(i: usize) -> String {
    match i % 20 {
        0..=11 => message(i),
        12..=16 => presence(i),
        17 | 18 => roster_get(i),
        _ => roster_result(i),
    }
}

fn message(i: usize) -> String {
    let body = match i % 3 {
        0 => "Are we still on for lunch tomorrow? I can book the usual place for 12:30, or the new one.",
        1 => "Tom &amp; Jerry said they&apos;d join later; bring the slides &lt;draft 3&gt; and a charger.",
        _ => "Grüße aus München! Das Meeting ist um 15 Uhr, Raum „Zugspitze“, zweiter Stock. Bis gleich 🙂",
    };
    let (open, close) = if i % 10 == 5 {
        ("<c:message xmlns:c='jabber:client'", "</c:message>")
    } else {
        ("<message", "</message>")
    };
    let state = if i.is_multiple_of(4) {
        "<cs:active xmlns:cs='http://jabber.org/protocol/chatstates'/>"
    } else {
        ""
    };
    format!(
        "{open} type='chat' to='juliet{}@example.com' id='m{i:08}'><body>{body}</body>{state}{close}",
        i % 97
    )
}

fn presence(i: usize) -> String {
    format!(
        "<presence id='p{i:08}' xml:lang='en'><show>away</show><status>In a meeting until 3pm, \
         reachable by phone for anything urgent</status><priority>5</priority>\
         <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://conversations.im' \
         ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>"
    )
}

fn roster_get(i: usize) -> String {
    format!("<iq type='get' id='r{i:08}'><query xmlns='jabber:iq:roster' ver='ver{i}'/></iq>")
}

fn roster_result(i: usize) -> String {
    format!(
        "<iq type='result' id='r{i:08}' to='romeo@example.com/orchard'>\
         <query xmlns='jabber:iq:roster' ver='ver{i}'>\
         <item jid='juliet@example.com' name='Juliet' subscription='both'><group>Friends</group></item>\
         <item jid='mercutio@example.org' subscription='to'/>\
         <item jid='benvolio@example.org' name='Ben' subscription='from' ask='subscribe'/>\
         </query></iq>"
    )
}

/// Frames `stream` as a connection does, `chunk` bytes per read: a read is framed in place when
/// nothing is buffered, otherwise appended to the leftover and framed there. Calls `each` on
/// every element; returns the element count.
fn frame_all(stream: &[u8], chunk: usize, mut each: impl FnMut(&[u8])) -> usize {
    let mut framer = Framer::new(Limits::default());
    let mut inbuf: Vec<u8> = Vec::new();
    let mut elements = 0;
    for read in stream.chunks(chunk) {
        let mut on_frame = |frame: Frame<'_>| {
            if let Frame::Element(raw) = frame {
                elements += 1;
                each(raw);
            }
        };
        if inbuf.is_empty() {
            let used = process(&mut framer, read, &mut on_frame);
            inbuf.extend_from_slice(&read[used..]);
        } else {
            inbuf.extend_from_slice(read);
            let used = process(&mut framer, &inbuf, &mut on_frame);
            inbuf.drain(..used);
        }
    }
    assert!(inbuf.is_empty(), "a partial stanza was left over");
    elements
}

/// Frames as much of `data` as possible; returns the bytes consumed.
fn process(framer: &mut Framer, data: &[u8], on_frame: &mut impl FnMut(Frame<'_>)) -> usize {
    let mut pos = 0;
    loop {
        match framer.next(&data[pos..]) {
            Ok(Some((frame, used))) => {
                pos += used;
                on_frame(frame);
            }
            Ok(None) => return pos,
            Err(e) => panic!("benchmark stream rejected: {e}"),
        }
    }
}

/// The framer alone: splitting and lexical checks.
#[divan::bench(args = [4096, 65_536])]
fn frame(bencher: Bencher, chunk: usize) {
    let stream = STREAM.as_slice();
    bencher
        .counter(BytesCount::new(stream.len()))
        .counter(ItemsCount::new(STANZAS))
        .bench(|| frame_all(black_box(stream), chunk, |raw| _ = black_box(raw)));
}

/// The framer, then [`scan_stanza`] on every element: the inbound path of a connection up to
/// dispatch.
#[divan::bench(args = [4096, 65_536])]
fn frame_and_scan(bencher: Bencher, chunk: usize) {
    let stream = STREAM.as_slice();
    let ns = StreamNs::new("jabber:client");
    let limits = Limits::default();
    bencher
        .counter(BytesCount::new(stream.len()))
        .counter(ItemsCount::new(STANZAS))
        .bench(|| {
            frame_all(black_box(stream), chunk, |raw| {
                let head = scan_stanza(raw, &ns, &limits).expect("valid stanza");
                black_box(head.first_child);
            })
        });
}

/// One stanza of each kind, as the benches below see it.
const KINDS: [&str; 5] = [
    "message",
    "message_prefixed",
    "presence",
    "iq_roster_get",
    "iq_roster_result",
];

fn sample(kind: &str) -> String {
    match kind {
        "message" => message(1),
        "message_prefixed" => message(5),
        "presence" => presence(12),
        "iq_roster_get" => roster_get(17),
        _ => roster_result(19),
    }
}

/// [`scan_stanza`] on one stanza: validation and the routing head, no tree.
#[divan::bench(args = KINDS)]
fn scan(bencher: Bencher, kind: &str) {
    let raw = sample(kind);
    let ns = StreamNs::new("jabber:client");
    let limits = Limits::default();
    bencher
        .counter(BytesCount::new(raw.len()))
        .counter(ItemsCount::new(1usize))
        .bench(|| scan_stanza(black_box(raw.as_bytes()), &ns, &limits).map(|h| h.child_elements));
}

/// [`parse_element`] on one stanza: the tree built for stanzas the server answers itself.
#[divan::bench(args = KINDS)]
fn parse(bencher: Bencher, kind: &str) {
    let raw = sample(kind);
    let ns = StreamNs::new("jabber:client");
    let limits = Limits::default();
    bencher
        .counter(BytesCount::new(raw.len()))
        .counter(ItemsCount::new(1usize))
        .bench(|| parse_element(black_box(raw.as_bytes()), &ns, &limits));
}
