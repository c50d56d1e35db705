//! xmppd: a thread-per-core XMPP server.
//!
//! The crate is a library so that tests, benches and fuzz targets reach the pure modules
//! (`xml`, `xmpp`, `stream`); `main.rs` is the composition root. See `docs/DESIGN.md` for
//! the map of modules and the direction of dependencies.

pub mod xml;
pub mod xmpp;
pub mod stream;
