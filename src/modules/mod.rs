//! Protocol modules, one file per specification. Each has a `register` function that declares
//! its handlers and features; `main.rs` lists them.

pub mod csi;
pub mod disco;
pub mod im;
pub mod offline;
pub mod ping;
pub mod session;
pub mod vcard;
pub mod version;
