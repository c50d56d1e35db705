//! Stream and stanza errors and their wire form (RFC 6120 §4.9, §8.3; XEP-0086 legacy codes).
//!
//! Errors are sorted by blame: what the peer did wrong becomes a [`StreamError`] (the stream is
//! closed) or a [`StanzaError`] (one stanza is bounced); local failures are logged by the caller
//! and surface on the wire, if at all, as `internal-server-error`. Every mapping from an internal
//! error to a wire condition lives in this file.

use crate::xml::{escape_attr, escape_text, XmlError};
use crate::xmpp::ns;

/// RFC 6120 §4.9.3 stream error conditions, in spec order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCondition {
    /// §4.9.3.1: XML that cannot be processed.
    BadFormat,
    /// §4.9.3.2: unsupported or missing namespace prefix.
    BadNamespacePrefix,
    /// §4.9.3.3: a new stream displaced this one.
    Conflict,
    /// §4.9.3.4: the peer was idle too long.
    ConnectionTimeout,
    /// §4.9.3.5: the domain is no longer served.
    HostGone,
    /// §4.9.3.6: the domain is not served.
    HostUnknown,
    /// §4.9.3.7: a stanza lacks `to` or `from` where required.
    ImproperAddressing,
    /// §4.9.3.8: an internal failure.
    InternalServerError,
    /// §4.9.3.9: `from` does not match the authenticated identity.
    InvalidFrom,
    /// §4.9.3.10: wrong stream or content namespace.
    InvalidNamespace,
    /// §4.9.3.11: invalid XML (schema validation; unused).
    InvalidXml,
    /// §4.9.3.12: data before authentication or binding.
    NotAuthorized,
    /// §4.9.3.13: XML that is not well-formed.
    NotWellFormed,
    /// §4.9.3.14: a local policy (size, rate, failures) was violated.
    PolicyViolation,
    /// §4.9.3.15: a remote entity needed for this stream is unreachable.
    RemoteConnectionFailed,
    /// §4.9.3.16: the stream must be renegotiated.
    Reset,
    /// §4.9.3.17: the server lacks resources for this stream.
    ResourceConstraint,
    /// §4.9.3.18: XML features XMPP forbids (comments, PIs, DTDs, entities).
    RestrictedXml,
    /// §4.9.3.19: redirect to another host.
    SeeOtherHost,
    /// §4.9.3.20: the server is shutting down.
    SystemShutdown,
    /// §4.9.3.21: none of the others applies.
    UndefinedCondition,
    /// §4.9.3.22: an encoding other than UTF-8.
    UnsupportedEncoding,
    /// §4.9.3.23: a required feature is missing.
    UnsupportedFeature,
    /// §4.9.3.24: an unknown first-level element.
    UnsupportedStanzaType,
    /// §4.9.3.25: an unsupported stream version.
    UnsupportedVersion,
}

impl StreamCondition {
    /// The element name of the condition.
    pub fn name(self) -> &'static str {
        use StreamCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }
}

/// A stream-level error: the stream is closed after it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    /// The defined condition.
    pub condition: StreamCondition,
    /// Optional human-readable explanation (never contains peer secrets).
    pub text: Option<String>,
}

impl StreamError {
    /// An error with a condition only.
    pub fn new(condition: StreamCondition) -> StreamError {
        StreamError {
            condition,
            text: None,
        }
    }

    /// An error with an explanatory text.
    pub fn with_text(condition: StreamCondition, text: impl Into<String>) -> StreamError {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// Write `<stream:error>…</stream:error></stream:stream>`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<stream:error><");
        out.extend_from_slice(self.condition.name().as_bytes());
        out.extend_from_slice(b" xmlns='");
        out.extend_from_slice(ns::STREAM_ERRORS.as_bytes());
        out.extend_from_slice(b"'/>");
        if let Some(text) = &self.text {
            out.extend_from_slice(b"<text xmlns='");
            out.extend_from_slice(ns::STREAM_ERRORS.as_bytes());
            out.extend_from_slice(b"' xml:lang='en'>");
            escape_text(text, out);
            out.extend_from_slice(b"</text>");
        }
        out.extend_from_slice(b"</stream:error></stream:stream>");
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.name())?;
        if let Some(text) = &self.text {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

impl From<&XmlError> for StreamError {
    fn from(e: &XmlError) -> StreamError {
        let condition = match e {
            XmlError::NotWellFormed(_) => StreamCondition::NotWellFormed,
            XmlError::RestrictedXml(_) => StreamCondition::RestrictedXml,
            XmlError::UnsupportedEncoding => StreamCondition::UnsupportedEncoding,
            XmlError::BadNamespacePrefix => StreamCondition::BadNamespacePrefix,
            XmlError::InvalidNamespace => StreamCondition::InvalidNamespace,
            XmlError::PolicyViolation(_) => StreamCondition::PolicyViolation,
            XmlError::BadFormat(_) => StreamCondition::BadFormat,
        };
        StreamError::with_text(condition, e.to_string())
    }
}

/// RFC 6120 §8.3.2 error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry.
    Cancel,
    /// Proceed; the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    /// The attribute value.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// RFC 6120 §8.3.3 stanza error conditions, in spec order (payment-required is never emitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaCondition {
    /// §8.3.3.1
    BadRequest,
    /// §8.3.3.2
    Conflict,
    /// §8.3.3.3
    FeatureNotImplemented,
    /// §8.3.3.4
    Forbidden,
    /// §8.3.3.5
    Gone,
    /// §8.3.3.6
    InternalServerError,
    /// §8.3.3.7
    ItemNotFound,
    /// §8.3.3.8
    JidMalformed,
    /// §8.3.3.9
    NotAcceptable,
    /// §8.3.3.10
    NotAllowed,
    /// §8.3.3.11
    NotAuthorized,
    /// §8.3.3.12
    PolicyViolation,
    /// §8.3.3.13
    RecipientUnavailable,
    /// §8.3.3.14
    Redirect,
    /// §8.3.3.15
    RegistrationRequired,
    /// §8.3.3.16
    RemoteServerNotFound,
    /// §8.3.3.17
    RemoteServerTimeout,
    /// §8.3.3.18
    ResourceConstraint,
    /// §8.3.3.19
    ServiceUnavailable,
    /// §8.3.3.20
    SubscriptionRequired,
    /// §8.3.3.21
    UndefinedCondition,
    /// §8.3.3.22
    UnexpectedRequest,
}

impl StanzaCondition {
    /// Every defined condition (RFC 6120 §8.3.3), to map a received name back to its value.
    pub const ALL: [StanzaCondition; 22] = {
        use StanzaCondition::*;
        [
            BadRequest,
            Conflict,
            FeatureNotImplemented,
            Forbidden,
            Gone,
            InternalServerError,
            ItemNotFound,
            JidMalformed,
            NotAcceptable,
            NotAllowed,
            NotAuthorized,
            PolicyViolation,
            RecipientUnavailable,
            Redirect,
            RegistrationRequired,
            RemoteServerNotFound,
            RemoteServerTimeout,
            ResourceConstraint,
            ServiceUnavailable,
            SubscriptionRequired,
            UndefinedCondition,
            UnexpectedRequest,
        ]
    };

    /// The element name of the condition.
    pub fn name(self) -> &'static str {
        use StanzaCondition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The usual type per RFC 6120 §8.3.3 (RFC types win over XEP-0086, LEGACYERR-04).
    pub fn default_type(self) -> ErrorType {
        use StanzaCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => {
                ErrorType::Auth
            }
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => {
                ErrorType::Wait
            }
            Conflict
            | FeatureNotImplemented
            | Gone
            | InternalServerError
            | ItemNotFound
            | NotAllowed
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }

    /// XEP-0086 §2 legacy error code (LEGACYERR-01); `None` where the XEP defines none.
    pub fn legacy_code(self) -> Option<u16> {
        use StanzaCondition::*;
        Some(match self {
            BadRequest => 400,
            Conflict => 409,
            FeatureNotImplemented => 501,
            Forbidden => 403,
            Gone => 302,
            InternalServerError => 500,
            ItemNotFound => 404,
            JidMalformed => 400,
            NotAcceptable => 406,
            NotAllowed => 405,
            NotAuthorized => 401,
            PolicyViolation => return None,
            RecipientUnavailable => 404,
            Redirect => 302,
            RegistrationRequired => 407,
            RemoteServerNotFound => 404,
            RemoteServerTimeout => 504,
            ResourceConstraint => 500,
            ServiceUnavailable => 503,
            SubscriptionRequired => 407,
            UndefinedCondition => 500,
            UnexpectedRequest => 400,
        })
    }
}

/// A stanza-level error, bounced to the sender of one stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// The defined condition.
    pub condition: StanzaCondition,
    /// The error type (defaults to the condition's usual type).
    pub error_type: ErrorType,
    /// Optional human-readable text.
    pub text: Option<String>,
    /// An application-specific condition element `(name, namespace)` (RFC 6120 §8.3.4),
    /// e.g. XEP-0191's `<blocked xmlns='urn:xmpp:blocking:errors'/>`.
    pub app: Option<(&'static str, &'static str)>,
}

impl StanzaError {
    /// An error with the condition's usual type.
    pub fn new(condition: StanzaCondition) -> StanzaError {
        StanzaError {
            condition,
            error_type: condition.default_type(),
            text: None,
            app: None,
        }
    }

    /// An error with an explanatory text.
    pub fn with_text(condition: StanzaCondition, text: impl Into<String>) -> StanzaError {
        StanzaError {
            text: Some(text.into()),
            ..StanzaError::new(condition)
        }
    }

    /// The same error with an application-specific condition element.
    pub fn with_app(self, name: &'static str, app_ns: &'static str) -> StanzaError {
        StanzaError {
            app: Some((name, app_ns)),
            ..self
        }
    }

    /// Write the `<error/>` element (CORE-STANZA-16), with the XEP-0086 `code` when `legacy_codes`.
    pub fn write_element(&self, legacy_codes: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"<error type='");
        out.extend_from_slice(self.error_type.name().as_bytes());
        out.push(b'\'');
        if legacy_codes {
            if let Some(code) = self.condition.legacy_code() {
                out.extend_from_slice(b" code='");
                out.extend_from_slice(code.to_string().as_bytes());
                out.push(b'\'');
            }
        }
        out.extend_from_slice(b"><");
        out.extend_from_slice(self.condition.name().as_bytes());
        out.extend_from_slice(b" xmlns='");
        out.extend_from_slice(ns::STANZAS.as_bytes());
        out.extend_from_slice(b"'/>");
        if let Some(text) = &self.text {
            out.extend_from_slice(b"<text xmlns='");
            out.extend_from_slice(ns::STANZAS.as_bytes());
            out.extend_from_slice(b"' xml:lang='en'>");
            escape_text(text, out);
            out.extend_from_slice(b"</text>");
        }
        if let Some((name, app_ns)) = self.app {
            out.push(b'<');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b" xmlns='");
            escape_attr(app_ns, out);
            out.extend_from_slice(b"'/>");
        }
        out.extend_from_slice(b"</error>");
    }

    /// Write a complete error reply to a stanza: `kind` is `message`, `presence` or `iq`; `to` is
    /// the original sender, `from` the original addressee, `id` copied (CORE-STANZA-04).
    pub fn write_reply(
        &self,
        kind: &str,
        id: Option<&str>,
        to: Option<&str>,
        from: Option<&str>,
        legacy_codes: bool,
        out: &mut Vec<u8>,
    ) {
        out.push(b'<');
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b" type='error'");
        for (name, value) in [("id", id), ("to", to), ("from", from)] {
            if let Some(v) = value {
                out.push(b' ');
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"='");
                escape_attr(v, out);
                out.push(b'\'');
            }
        }
        out.push(b'>');
        self.write_element(legacy_codes, out);
        out.extend_from_slice(b"</");
        out.extend_from_slice(kind.as_bytes());
        out.push(b'>');
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.condition.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_wire_form_core_stream_21() {
        let mut out = Vec::new();
        StreamError::with_text(StreamCondition::HostUnknown, "a<b").write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>a&lt;b</text>\
             </stream:error></stream:stream>"
        );
    }

    #[test]
    fn stanza_error_reply_legacyerr_01() {
        let mut out = Vec::new();
        StanzaError::new(StanzaCondition::ServiceUnavailable).write_reply(
            "iq",
            Some("a'1"),
            Some("u@d/r"),
            Some("d"),
            true,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<iq type='error' id='a&apos;1' to='u@d/r' from='d'><error type='cancel' code='503'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }

    #[test]
    fn app_condition_follows_text_rfc6120_8_3_4_block_07() {
        let mut out = Vec::new();
        StanzaError::with_text(StanzaCondition::NotAcceptable, "blocked")
            .with_app("blocked", "urn:xmpp:blocking:errors")
            .write_element(false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>blocked</text>\
             <blocked xmlns='urn:xmpp:blocking:errors'/></error>"
        );
    }

    #[test]
    fn legacy_codes_can_be_switched_off_legacyerr_04() {
        let mut out = Vec::new();
        StanzaError::new(StanzaCondition::BadRequest).write_element(false, &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("code="));
    }

    #[test]
    fn rfc6120_types_core_stanza_17() {
        assert_eq!(
            StanzaCondition::InternalServerError.default_type(),
            ErrorType::Cancel
        );
        assert_eq!(StanzaCondition::Forbidden.default_type(), ErrorType::Auth);
        assert_eq!(
            StanzaCondition::ResourceConstraint.default_type(),
            ErrorType::Wait
        );
        assert_eq!(
            StanzaCondition::JidMalformed.default_type(),
            ErrorType::Modify
        );
    }
}
