//! JIDs (RFC 7622 / RFC 6122 stringprep profiles).
