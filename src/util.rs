//! Small helpers with no better home.

/// Fill `buf` from the operating system's CSPRNG. Failure means the OS cannot provide
/// randomness, which no part of the server can work without.
pub fn random_bytes(buf: &mut [u8]) {
    if let Err(e) = getrandom::fill(buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// A new stream id: 128 random bits, hex (RFC 6120 §4.7.3, CORE-STREAM-02/03).
pub fn stream_id() -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_unique_core_stream_03() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| stream_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|i| i.len() == 32));
    }
}
