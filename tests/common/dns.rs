//! Pieces of the test DNS responders (UDP, one question a query): reading the question,
//! writing the header, answer records and the EDNS(0) OPT record of a response.

/// The question of a query.
pub struct Question {
    /// The asked name, lowercase, dotted, no trailing dot (empty for the root).
    pub name: String,
    pub qtype: u16,
    /// The end of the question section in the query.
    pub end: usize,
    /// The query carries additional records (EDNS(0)).
    pub edns: bool,
}

/// The question of `q`, if `q` is a query with exactly one.
pub fn question(q: &[u8]) -> Option<Question> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([q[4], q[5]]);
    let arcount = u16::from_be_bytes([q[10], q[11]]);
    // The question: labels (never compressed in a query), type, class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let end = i + 4;
    if qdcount != 1 || q.len() < end {
        return None;
    }
    Some(Question {
        name: labels.join("."),
        qtype,
        end,
        edns: arcount > 0,
    })
}

/// The start of the response to `q` (whose question is `question`): the header (QR, AA, RD
/// echoed, RA; `rcode`; `answers` and `authority` records counted, one OPT record if EDNS(0)
/// was asked) and the question.
pub fn response_start(
    q: &[u8],
    question: &Question,
    rcode: u8,
    answers: usize,
    authority: usize,
) -> Vec<u8> {
    let mut r = Vec::with_capacity(512);
    r.extend_from_slice(&q[0..2]); // id
    r.push(0x80 | 0x04 | (q[2] & 0x01)); // QR, AA, RD echoed; opcode 0
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&u16::try_from(answers).unwrap().to_be_bytes());
    r.extend_from_slice(&u16::try_from(authority).unwrap().to_be_bytes());
    r.extend_from_slice(&u16::from(question.edns).to_be_bytes());
    r.extend_from_slice(&q[12..question.end]);
    r
}

/// An answer record for the question's name (compressed), class IN, TTL 30.
pub fn push_answer(r: &mut Vec<u8>, rtype: u16, rdata: &[u8]) {
    r.extend_from_slice(&[0xc0, 0x0c]); // the question's name
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes()); // IN
    r.extend_from_slice(&30u32.to_be_bytes()); // TTL
    r.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
    r.extend_from_slice(rdata);
}

/// EDNS(0) asked: an OPT record of our own (1232-byte payload).
pub fn push_opt(r: &mut Vec<u8>) {
    r.push(0); // the root
    r.extend_from_slice(&41u16.to_be_bytes());
    r.extend_from_slice(&[0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
}

/// `name` (dotted, no trailing dot; empty for the root) in DNS wire form, uncompressed.
pub fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(u8::try_from(label.len()).expect("a label under 64 bytes"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}
