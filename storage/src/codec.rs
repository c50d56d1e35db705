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

    /// Ends the record; bytes left over mean it is not what we think it is.
    pub(crate) fn finish(self) -> Result<(), StorageError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
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
    fn huge_length_prefix_is_corrupt_without_allocating() {
        let buf = Encoder::new(1).u32(u32::MAX).finish();
        let (mut d, _) = Decoder::new(&buf, "x").unwrap();
        assert!(matches!(d.bytes(), Err(StorageError::Corrupt(_))));
    }
}
