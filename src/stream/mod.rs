//! Sans-I/O stream negotiation shared by c2s, s2s and components.

pub mod sasl;
