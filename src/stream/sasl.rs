//! SASL mechanisms (RFC 6120 §6): SCRAM-SHA-1/256 (+PLUS), PLAIN.
