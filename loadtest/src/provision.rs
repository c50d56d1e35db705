//! XEP-0227 (Portable Import/Export Format) and plain-list provisioning of users with ring
//! rosters.
//!
//! User `i` (1-based) holds the `R/2` users before it and the `R - R/2` after it on a ring of
//! `N`, so with an even `R` the relation is symmetric and both ends hold `subscription='both'`.

use std::io::{self, Write};

/// The contacts of user `i` (1-based) among `n` users with `r` contacts each, in ring order.
pub fn contacts(i: usize, n: usize, r: usize) -> impl Iterator<Item = usize> {
    let r = r.min(n.saturating_sub(1));
    let before = r / 2;
    let after = r - before;
    let offsets = (1..=before).map(move |d| n - d).chain(1..=after);
    // ((i-1) + off) mod n, back to 1-based.
    offsets.map(move |off| (i - 1 + off) % n + 1)
}

/// Whether user `j` is among the contacts of user `i` (both 1-based) on the ring of
/// [`contacts`], without walking it.
pub fn is_contact(i: usize, j: usize, n: usize, r: usize) -> bool {
    if i == j || i == 0 || j == 0 || i > n || j > n {
        return false;
    }
    let r = r.min(n.saturating_sub(1));
    let before = r / 2;
    let after = r - before;
    // Distance from i forward to j on the ring: 1..=after, or n-before..n-1.
    let d = (j + n - i) % n;
    (1..=after).contains(&d) || d >= n - before
}

/// Writes the XEP-0227 document for users `{prefix}1..={prefix}{n}` on `domain`.
pub fn write_xep0227(
    out: &mut impl Write,
    domain: &str,
    prefix: &str,
    password: &str,
    n: usize,
    r: usize,
) -> io::Result<()> {
    let domain = escape(domain);
    let prefix = escape(prefix);
    let password = escape(password);
    out.write_all(b"<?xml version='1.0' encoding='UTF-8'?>\n")?;
    out.write_all(b"<server-data xmlns='urn:xmpp:pie:0'>\n")?;
    writeln!(out, "  <host jid='{domain}'>")?;
    for i in 1..=n {
        writeln!(out, "    <user name='{prefix}{i}' password='{password}'>")?;
        if r > 0 && n > 1 {
            out.write_all(b"      <query xmlns='jabber:iq:roster'>\n")?;
            for c in contacts(i, n, r) {
                writeln!(
                    out,
                    "        <item jid='{prefix}{c}@{domain}' name='{prefix}{c}' \
                     subscription='both'><group>bench</group></item>"
                )?;
            }
            out.write_all(b"      </query>\n")?;
        }
        out.write_all(b"    </user>\n")?;
    }
    out.write_all(b"  </host>\n</server-data>\n")?;
    Ok(())
}

/// Writes one line per user: `user1@domain pass user2@domain,user3@domain`.
pub fn write_list(
    out: &mut impl Write,
    domain: &str,
    prefix: &str,
    password: &str,
    n: usize,
    r: usize,
) -> io::Result<()> {
    for i in 1..=n {
        write!(out, "{prefix}{i}@{domain} {password}")?;
        let mut sep = b' ';
        for c in contacts(i, n, r) {
            out.write_all(&[sep])?;
            write!(out, "{prefix}{c}@{domain}")?;
            sep = b',';
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// XML attribute escaping.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{attr, Frame, Splitter};
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn ring_is_symmetric_and_skips_self() {
        for (n, r) in [(10, 4), (7, 6), (5, 2), (3, 10), (100, 50)] {
            let mut rel = BTreeSet::new();
            for i in 1..=n {
                let cs: Vec<usize> = contacts(i, n, r).collect();
                assert_eq!(cs.len(), r.min(n - 1), "n={n} r={r}");
                assert!(!cs.contains(&i));
                let distinct: BTreeSet<_> = cs.iter().collect();
                assert_eq!(distinct.len(), cs.len());
                for c in cs {
                    rel.insert((i, c));
                }
            }
            if r % 2 == 0 {
                for &(a, b) in &rel {
                    assert!(rel.contains(&(b, a)), "n={n} r={r}: {a}->{b} not mirrored");
                }
            }
        }
    }

    #[test]
    fn is_contact_agrees_with_the_ring() {
        for (n, r) in [
            (10, 4),
            (7, 6),
            (5, 2),
            (3, 10),
            (100, 50),
            (200, 50),
            (4, 0),
            (1, 2),
        ] {
            for i in 1..=n {
                let cs: BTreeSet<usize> = contacts(i, n, r).collect();
                for j in 0..=n + 1 {
                    assert_eq!(
                        is_contact(i, j, n, r),
                        cs.contains(&j),
                        "n={n} r={r} {i}->{j}"
                    );
                }
            }
        }
    }

    #[test]
    fn xep0227_is_well_formed_with_both_subscriptions() {
        let mut out = Vec::new();
        write_xep0227(&mut out, "localhost", "user", "pass", 6, 2).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("<?xml version='1.0' encoding='UTF-8'?>\n<server-data"));
        // The document, split like a stream: <server-data> is "depth 1", <host> one stanza.
        let mut sp = Splitter::new();
        let mut frames = Vec::new();
        while let Some(f) = sp.next(&out) {
            frames.push(f);
        }
        assert!(matches!(frames[0], Frame::StreamOpen(_)));
        let Frame::Stanza(host) = frames[1].clone() else {
            panic!("{frames:?}")
        };
        assert_eq!(frames[2], Frame::StreamClose);
        assert_eq!(attr(&out[host.clone()], b"jid"), Some(&b"localhost"[..]));
        let mut roster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut user = String::new();
        for line in text.lines() {
            if let Some(rest) = line.trim().strip_prefix("<user name='") {
                user = rest.split('\'').next().unwrap().to_string();
                assert!(line.contains("password='pass'"));
            }
            if line.contains("<item ") {
                assert!(line.contains("subscription='both'"));
                let jid = line
                    .split("jid='")
                    .nth(1)
                    .unwrap()
                    .split('@')
                    .next()
                    .unwrap();
                roster.entry(user.clone()).or_default().push(jid.into());
            }
        }
        assert_eq!(roster["user1"], ["user6", "user2"]);
        for (u, cs) in &roster {
            for c in cs {
                assert!(roster[c].contains(u), "{u} -> {c} not mirrored");
            }
        }
        let opens = text.matches("<user ").count();
        assert_eq!(opens, 6);
        assert_eq!(text.matches("</user>").count(), 6);
    }

    #[test]
    fn list_format() {
        let mut out = Vec::new();
        write_list(&mut out, "localhost", "user", "pass", 4, 2).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "user1@localhost pass user4@localhost,user2@localhost"
        );
        assert_eq!(
            lines[3],
            "user4@localhost pass user3@localhost,user1@localhost"
        );
        let mut out = Vec::new();
        write_list(&mut out, "d", "u", "p", 2, 0).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "u1@d p\nu2@d p\n");
    }
}
