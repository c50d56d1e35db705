//! Hand-written binary record encoding shared by the stores.
//!
//! Every record starts with one byte naming its format version, so a later schema can tell
//! old records from new ones during a migration. Integers are little-endian and fixed-width;
//! byte strings carry a `u32` length prefix. Decoding never trusts a length: it checks it
//! against the bytes left before allocating, and a record must be consumed exactly.

use crate::StorageError;

/// Builds one record.
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// Starts a record of format `version`.
    pub(crate) fn new(version: u8) -> Encoder {
        let mut buf = Vec::with_capacity(64);
        buf.push(version);
        Encoder { buf }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A length-prefixed byte string. Records are far below 4 GiB (LMDB values are bounded
    /// by the map), so a longer one is a bug, not data.
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("record field longer than 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads one record, failing with [`StorageError::Corrupt`] on anything malformed.
pub(crate) struct Decoder<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// Reads the format version byte of a record describing `what` (used in errors).
    pub(crate) fn new(
        buf: &'a [u8],
        what: &'static str,
    ) -> Result<(Decoder<'a>, u8), StorageError> {
        let mut d = Decoder { rest: buf, what };
        let version = d.u8()?;
        Ok((d, version))
    }

    pub(crate) fn corrupt(&self, why: &str) -> StorageError {
        StorageError::Corrupt(format!("{}: {why}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.rest.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StorageError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StorageError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A length-prefixed byte string that must be UTF-8.
    pub(crate) fn str(&mut self) -> Result<&'a str, StorageError> {
        let raw = self.bytes()?;
        std::str::from_utf8(raw).map_err(|_| self.corrupt("string is not UTF-8"))
    }

    /// Ends the record; bytes left over mean it is not what we think it is.
    pub(crate) fn finish(self) -> Result<(), StorageError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}

/// Checks shared by the record tests of every store.
#[cfg(test)]
pub(crate) mod testing {
    use crate::StorageError;

    /// Every proper prefix of `good` must decode to `Corrupt`, and so must `good` plus a
    /// trailing byte.
    pub(crate) fn every_truncation_is_corrupt<T: std::fmt::Debug>(
        good: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, StorageError>,
    ) {
        for cut in 0..good.len() {
            match decode(&good[..cut]) {
                Err(StorageError::Corrupt(_)) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let mut trailing = good.to_vec();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(StorageError::Corrupt(_))));
    }

    /// Feeds `decode` random bytes and single-byte corruptions of `good`; it must return
    /// (anything) rather than panic. Deterministic xorshift, so a failure reproduces.
    pub(crate) fn garbage_never_panics<T>(
        good: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, StorageError>,
    ) {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 160) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 && !good.is_empty() {
                // Mostly-valid records with one flipped byte reach deeper into the decoder.
                buf = good.to_vec();
                let i = (next() as usize) % buf.len();
                buf[i] ^= (next() as u8) | 1;
            }
            let _ = decode(&buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        Encoder::new(3)
            .u8(7)
            .u32(0xdead_beef)
            .u64(u64::MAX - 1)
            .bytes(b"hello")
            .finish()
    }

    fn decode(buf: &[u8]) -> Result<(u8, u8, u32, u64, Vec<u8>), StorageError> {
        let (mut d, v) = Decoder::new(buf, "sample")?;
        let out = (v, d.u8()?, d.u32()?, d.u64()?, d.bytes()?.to_vec());
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let got = decode(&sample()).unwrap();
        assert_eq!(got, (3, 7, 0xdead_beef, u64::MAX - 1, b"hello".to_vec()));
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let buf = sample();
        for cut in 0..buf.len() {
            match decode(&buf[..cut]) {
                Err(StorageError::Corrupt(msg)) => assert!(msg.contains("sample"), "{msg}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn trailing_bytes_are_corrupt() {
        let mut buf = sample();
        buf.push(0);
        assert!(matches!(decode(&buf), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn str_must_be_utf8() {
        let buf = Encoder::new(1).bytes(b"ok").bytes(b"\xff").finish();
        let (mut d, _) = Decoder::new(&buf, "x").unwrap();
        assert_eq!(d.str().unwrap(), "ok");
        assert!(matches!(d.str(), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn huge_length_prefix_is_corrupt_without_allocating() {
        let buf = Encoder::new(1).u32(u32::MAX).finish();
        let (mut d, _) = Decoder::new(&buf, "x").unwrap();
        assert!(matches!(d.bytes(), Err(StorageError::Corrupt(_))));
    }
}
