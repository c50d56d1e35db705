//! Arbitrary bytes through Framer, scan_stanza and parse_element (see `xmppd::xml::fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xmppd::xml::fuzz::framer(data));
