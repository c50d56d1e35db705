//! Stanza kinds and types (RFC 6120 §8.2, RFC 6121 §4.7.1, §5.2.2).

/// The three stanza kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl Kind {
    /// Recognise a top-level element name in the content namespace.
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }

    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }
}

/// RFC 6121 §5.2.2 message types; an absent `type` is `normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `normal` (or absent)
    Normal,
    /// `chat`
    Chat,
    /// `groupchat`
    Groupchat,
    /// `headline`
    Headline,
    /// `error`
    Error,
}

/// RFC 6121 §4.7.1 presence types; an absent `type` means available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceType {
    /// no `type`: available
    Available,
    /// `unavailable`
    Unavailable,
    /// `subscribe`
    Subscribe,
    /// `subscribed`
    Subscribed,
    /// `unsubscribe`
    Unsubscribe,
    /// `unsubscribed`
    Unsubscribed,
    /// `probe`
    Probe,
    /// `error`
    Error,
}

impl MessageType {
    /// Every type, in declaration order (the order `StanzaType::to_u8` numbers them in).
    pub const ALL: [MessageType; 5] = [
        MessageType::Normal,
        MessageType::Chat,
        MessageType::Groupchat,
        MessageType::Headline,
        MessageType::Error,
    ];
}

impl IqType {
    /// Every type, in declaration order.
    pub const ALL: [IqType; 4] = [IqType::Get, IqType::Set, IqType::Result, IqType::Error];
}

impl PresenceType {
    /// Every type, in declaration order.
    pub const ALL: [PresenceType; 8] = [
        PresenceType::Available,
        PresenceType::Unavailable,
        PresenceType::Subscribe,
        PresenceType::Subscribed,
        PresenceType::Unsubscribe,
        PresenceType::Unsubscribed,
        PresenceType::Probe,
        PresenceType::Error,
    ];

    /// The `type` attribute's value (None for available presence, which has none).
    pub fn name(self) -> Option<&'static str> {
        match self {
            PresenceType::Available => None,
            PresenceType::Unavailable => Some("unavailable"),
            PresenceType::Subscribe => Some("subscribe"),
            PresenceType::Subscribed => Some("subscribed"),
            PresenceType::Unsubscribe => Some("unsubscribe"),
            PresenceType::Unsubscribed => Some("unsubscribed"),
            PresenceType::Probe => Some("probe"),
            PresenceType::Error => Some("error"),
        }
    }
}

/// Write a presence stanza the server generates: `<presence type from to/>` with no
/// payload (the one place that writes these: subscriptions, probes, unavailable).
pub fn write_presence(out: &mut Vec<u8>, ty: PresenceType, from: &str, to: Option<&str>) {
    out.extend_from_slice(b"<presence");
    if let Some(name) = ty.name() {
        out.extend_from_slice(b" type='");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\'');
    }
    out.extend_from_slice(b" from='");
    crate::xml::escape_attr(from, out);
    if let Some(to) = to {
        out.extend_from_slice(b"' to='");
        crate::xml::escape_attr(to, out);
    }
    out.extend_from_slice(b"'/>");
}

/// RFC 6120 §8.2.3 IQ types; `type` is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqType {
    /// `get`
    Get,
    /// `set`
    Set,
    /// `result`
    Result,
    /// `error`
    Error,
}

/// A stanza's kind together with its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StanzaType {
    /// A message.
    Message(MessageType),
    /// A presence.
    Presence(PresenceType),
    /// An IQ.
    Iq(IqType),
}

impl StanzaType {
    /// Parse the `type` attribute of a stanza of `kind`; `Err(())` for a value the kind does
    /// not define (or a missing IQ type), which the caller answers with `bad-request`.
    #[allow(clippy::result_unit_err)]
    pub fn parse(kind: Kind, ty: Option<&str>) -> Result<StanzaType, ()> {
        Ok(match kind {
            Kind::Message => StanzaType::Message(match ty {
                None | Some("normal") => MessageType::Normal,
                Some("chat") => MessageType::Chat,
                Some("groupchat") => MessageType::Groupchat,
                Some("headline") => MessageType::Headline,
                Some("error") => MessageType::Error,
                Some(_) => return Err(()),
            }),
            Kind::Presence => StanzaType::Presence(match ty {
                None => PresenceType::Available,
                Some("unavailable") => PresenceType::Unavailable,
                Some("subscribe") => PresenceType::Subscribe,
                Some("subscribed") => PresenceType::Subscribed,
                Some("unsubscribe") => PresenceType::Unsubscribe,
                Some("unsubscribed") => PresenceType::Unsubscribed,
                Some("probe") => PresenceType::Probe,
                Some("error") => PresenceType::Error,
                Some(_) => return Err(()),
            }),
            Kind::Iq => StanzaType::Iq(match ty {
                Some("get") => IqType::Get,
                Some("set") => IqType::Set,
                Some("result") => IqType::Result,
                Some("error") => IqType::Error,
                _ => return Err(()),
            }),
        })
    }

    /// The stanza kind.
    pub fn kind(self) -> Kind {
        match self {
            StanzaType::Message(_) => Kind::Message,
            StanzaType::Presence(_) => Kind::Presence,
            StanzaType::Iq(_) => Kind::Iq,
        }
    }

    /// True for `type='error'` of any kind: never answered with another error.
    pub fn is_error(self) -> bool {
        matches!(
            self,
            StanzaType::Message(MessageType::Error)
                | StanzaType::Presence(PresenceType::Error)
                | StanzaType::Iq(IqType::Error)
        )
    }

    /// True for IQ get/set, the requests that must be answered.
    pub fn is_request(self) -> bool {
        matches!(self, StanzaType::Iq(IqType::Get | IqType::Set))
    }

    /// Compact encoding for cross-shard batches.
    pub fn to_u8(self) -> u8 {
        match self {
            StanzaType::Message(t) => t as u8,
            StanzaType::Presence(t) => 0x10 | t as u8,
            StanzaType::Iq(t) => 0x20 | t as u8,
        }
    }

    /// Inverse of [`StanzaType::to_u8`].
    pub fn from_u8(v: u8) -> Option<StanzaType> {
        let i = usize::from(v & 0x0f);
        match v >> 4 {
            0 => MessageType::ALL.get(i).copied().map(StanzaType::Message),
            1 => PresenceType::ALL.get(i).copied().map(StanzaType::Presence),
            2 => IqType::ALL.get(i).copied().map(StanzaType::Iq),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_is_written_with_its_type_and_escaped_addresses() {
        let mut out = Vec::new();
        write_presence(&mut out, PresenceType::Unavailable, "a@d/r'", Some("b@d"));
        assert_eq!(
            out,
            b"<presence type='unavailable' from='a@d/r&apos;' to='b@d'/>"
        );
        out.clear();
        write_presence(&mut out, PresenceType::Available, "a@d", None);
        assert_eq!(out, b"<presence from='a@d'/>");
        for t in [None, Some("probe"), Some("subscribed"), Some("error")] {
            let ty = StanzaType::parse(Kind::Presence, t).unwrap();
            let StanzaType::Presence(pt) = ty else {
                panic!()
            };
            assert_eq!(pt.name(), t);
        }
    }

    #[test]
    fn types_round_trip_through_u8() {
        for kind in [Kind::Message, Kind::Presence, Kind::Iq] {
            for ty in [
                None,
                Some("normal"),
                Some("chat"),
                Some("groupchat"),
                Some("headline"),
                Some("error"),
                Some("unavailable"),
                Some("subscribe"),
                Some("subscribed"),
                Some("unsubscribe"),
                Some("unsubscribed"),
                Some("probe"),
                Some("get"),
                Some("set"),
                Some("result"),
            ] {
                if let Ok(t) = StanzaType::parse(kind, ty) {
                    assert_eq!(StanzaType::from_u8(t.to_u8()), Some(t));
                    assert_eq!(t.kind(), kind);
                }
            }
        }
    }

    #[test]
    fn iq_type_is_required_core_stanza_06() {
        assert!(StanzaType::parse(Kind::Iq, None).is_err());
        assert!(StanzaType::parse(Kind::Iq, Some("foo")).is_err());
        assert!(StanzaType::parse(Kind::Presence, Some("foo")).is_err());
        assert_eq!(
            StanzaType::parse(Kind::Message, None),
            Ok(StanzaType::Message(MessageType::Normal))
        );
    }
}
