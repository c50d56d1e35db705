//! XML stream layer: framer, stanza scanner, element tree and writer (RFC 6120 §11).
