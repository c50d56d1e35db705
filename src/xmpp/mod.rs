//! XMPP vocabulary without I/O: JIDs, namespaces, errors.

pub mod jid;
