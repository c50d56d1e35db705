//! Fuzz entry points, called by the one-line targets in `fuzz/` (not part of the API).
//!
//! They panic when an invariant breaks; that is what the fuzzer looks for.

use super::{parse_element, scan_stanza, write_with_attrs, Frame, Framer, Limits};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>";

/// Feeds `data` through [`Framer`], [`scan_stanza`] and [`parse_element`], checking that:
/// the frames do not depend on how the input is split; every element frame is exactly the bytes
/// consumed; scan and parse agree; a parsed element re-serializes to something that parses back
/// to the same tree; and rewriting attributes keeps a stanza valid.
///
/// The first byte picks options: bit 0 prepends a stream header, the rest seeds the split.
pub fn framer(data: &[u8]) {
    let Some((&opts, body)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(HEADER.len() + body.len());
    if opts & 1 == 1 {
        input.extend_from_slice(HEADER);
    }
    input.extend_from_slice(body);
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 16,
        max_attrs: 16,
    };
    let whole = run(&input, &[input.len()], limits);
    let cut = usize::from(opts >> 1) * input.len() / 128;
    let split = run(&input, &[cut, input.len()], limits);
    assert_eq!(whole, split, "frames depend on where the input was cut");
}

/// Frames `input`, releasing it up to each of `ends` in turn; returns a digest of the frames
/// (merged whitespace) and the error, if any.
fn run(input: &[u8], ends: &[usize], limits: Limits) -> (Vec<Vec<u8>>, Option<super::XmlError>) {
    let mut framer = Framer::new(limits);
    let mut start = 0;
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for &end in ends {
        loop {
            let buf = input.get(start..end).unwrap_or_default();
            match framer.next(buf) {
                Ok(Some((frame, used))) => {
                    assert!(used <= buf.len(), "consumed more than given");
                    let digest = match frame {
                        Frame::StreamOpen(h) => format!("open {h:?}").into_bytes(),
                        Frame::Element(raw) => {
                            assert_eq!(
                                Some(raw),
                                buf.get(..used),
                                "element is not the consumed bytes"
                            );
                            check_element(raw, &framer, limits);
                            raw.to_vec()
                        }
                        Frame::Whitespace => {
                            assert!(used > 0, "empty whitespace frame");
                            if frames.last().is_some_and(|f| f == b" ") {
                                start += used;
                                continue;
                            }
                            b" ".to_vec()
                        }
                        Frame::StreamClose => b"close".to_vec(),
                    };
                    frames.push(digest);
                    start += used;
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn check_element(raw: &[u8], framer: &Framer, limits: Limits) {
    let ns = framer.stream_ns();
    let scanned = scan_stanza(raw, ns, &limits);
    let parsed = parse_element(raw, ns, &limits);
    assert_eq!(
        scanned.as_ref().err(),
        parsed.as_ref().err(),
        "scan and parse disagree"
    );
    let (Ok(head), Ok(tree)) = (scanned, parsed) else {
        return;
    };
    assert_eq!((head.name, head.ns), (tree.name.as_str(), tree.ns.as_str()));
    assert_eq!(head.child_elements as usize, tree.elements().count());

    let written = tree.to_string_in(ns.default_ns());
    // Written output may be longer and declare more prefixes than the input did.
    let unbounded = Limits {
        max_stanza_bytes: usize::MAX,
        max_attrs: usize::MAX,
        ..limits
    };
    let again = parse_element(written.as_bytes(), ns, &unbounded);
    assert_eq!(
        again.as_ref(),
        Ok(&tree),
        "write_to output does not parse back: {written}"
    );

    let mut out = Vec::new();
    write_with_attrs(&head, &[("from", "a@b/<'\"&>"), ("id", "x")], &mut out);
    let rewritten = scan_stanza(&out, ns, &unbounded);
    let from = rewritten.as_ref().ok().and_then(|h| h.attr("from"));
    assert_eq!(from.as_deref(), Some("a@b/<'\"&>"), "{rewritten:?}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn smoke() {
        super::framer(b"");
        super::framer(b"\x01<message><body>hi</body></message> <iq/></stream:stream>");
        super::framer(b"\x41<message xml:lang='en' db:x='1'><db:y/>t&amp;<![CDATA[<]]></message>");
        super::framer(b"\x00<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>");
        super::framer(b"\xFF<a><!-- c --></a>");
    }
}
