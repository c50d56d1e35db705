//! XMPP vocabulary without I/O: JIDs, namespaces, stanza kinds, errors.

pub mod caps;
pub mod content;
pub mod dataform;
pub mod error;
pub mod jid;
pub mod ns;
pub mod stanza;
