//! RFC 6121 §3 and Appendix A: the presence subscription state machine, as two pure
//! functions over a state, one per processing side. Table A is the user's server handling what
//! the user sends (`outbound`); table B is the contact's server handling what arrives
//! (`inbound`). Pre-approval (§3.4) is applied by the caller, which knows the `approved` flag.

/// The subscription state of one contact in one user's roster: the nine states of RFC 6121
/// Appendix A (pending-out only without `to`, pending-in only without `from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubState {
    /// The user receives the contact's presence.
    pub to: bool,
    /// The contact receives the user's presence.
    pub from: bool,
    /// The user asked for the contact's presence ("ask='subscribe'").
    pub pending_out: bool,
    /// The contact asked for the user's presence and the user has not answered.
    pub pending_in: bool,
}

/// The four subscription-related presence types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// `subscribe`
    Subscribe,
    /// `subscribed`
    Subscribed,
    /// `unsubscribe`
    Unsubscribe,
    /// `unsubscribed`
    Unsubscribed,
}

/// What the contact's server does with an inbound subscription stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundAction {
    /// Deliver to the user's available resources (D).
    Deliver,
    /// Do not deliver (–).
    Drop,
    /// Answer `subscribed` on the user's behalf and do not deliver (AR).
    AutoReply,
}

impl SubState {
    /// `none` / `to` / `from` / `both`.
    pub fn subscription(self) -> &'static str {
        match (self.to, self.from) {
            (false, false) => "none",
            (true, false) => "to",
            (false, true) => "from",
            (true, true) => "both",
        }
    }
}

/// Table A: the user sends `kind` to the contact. Returns whether the stanza is routed and the
/// new state.
pub fn outbound(s: SubState, kind: SubKind) -> (bool, SubState) {
    let mut n = s;
    match kind {
        // Always routed, so that peers can resynchronise (IM-SUB-03).
        SubKind::Subscribe => {
            if !s.to {
                n.pending_out = true;
            }
            (true, n)
        }
        SubKind::Unsubscribe => {
            n.to = false;
            n.pending_out = false;
            (true, n)
        }
        // Routed only when it changes something (IM-SUB-10).
        SubKind::Subscribed => {
            if s.pending_in {
                n.from = true;
                n.pending_in = false;
                (true, n)
            } else {
                (false, s)
            }
        }
        SubKind::Unsubscribed => {
            if s.from || s.pending_in {
                n.from = false;
                n.pending_in = false;
                (true, n)
            } else {
                (false, s)
            }
        }
    }
}

/// Table B: the contact's `kind` arrives for the user. Returns what to do and the new state.
pub fn inbound(s: SubState, kind: SubKind) -> (InboundAction, SubState) {
    let mut n = s;
    match kind {
        SubKind::Subscribe => {
            if s.from {
                // IM-SUB-04: already approved.
                (InboundAction::AutoReply, s)
            } else if s.pending_in {
                // IM-SUB-07: no duplicate while a request is pending.
                (InboundAction::Drop, s)
            } else {
                n.pending_in = true;
                (InboundAction::Deliver, n)
            }
        }
        SubKind::Unsubscribe => {
            if s.from || s.pending_in {
                n.from = false;
                n.pending_in = false;
                (InboundAction::Deliver, n)
            } else {
                (InboundAction::Drop, s)
            }
        }
        SubKind::Subscribed => {
            if s.pending_out {
                n.to = true;
                n.pending_out = false;
                (InboundAction::Deliver, n)
            } else {
                (InboundAction::Drop, s)
            }
        }
        SubKind::Unsubscribed => {
            if s.to || s.pending_out {
                n.to = false;
                n.pending_out = false;
                (InboundAction::Deliver, n)
            } else {
                (InboundAction::Drop, s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of each table (IM-SUBTAB-01/02), each checking all four stanza types.

    use super::*;
    use InboundAction::{AutoReply as AR, Deliver as D, Drop as X};
    use SubKind::*;

    /// States by their Appendix A names.
    fn st(name: &str) -> SubState {
        let mut s = SubState::default();
        for part in name.split('+') {
            match part {
                "N" => {}
                "To" => s.to = true,
                "From" => s.from = true,
                "Both" => {
                    s.to = true;
                    s.from = true
                }
                "PO" => s.pending_out = true,
                "PI" => s.pending_in = true,
                other => panic!("unknown state part {other}"),
            }
        }
        s
    }

    /// Table A row: for subscribe, unsubscribe, subscribed, unsubscribed: (routed, new state).
    fn row_a(state: &str, cells: [(bool, &str); 4]) {
        for (kind, (routed, next)) in [Subscribe, Unsubscribe, Subscribed, Unsubscribed]
            .into_iter()
            .zip(cells)
        {
            assert_eq!(
                outbound(st(state), kind),
                (routed, st(next)),
                "outbound {kind:?} in {state}"
            );
        }
    }

    /// Table B row: for subscribe, unsubscribe, subscribed, unsubscribed: (action, new state).
    fn row_b(state: &str, cells: [(InboundAction, &str); 4]) {
        for (kind, (action, next)) in [Subscribe, Unsubscribe, Subscribed, Unsubscribed]
            .into_iter()
            .zip(cells)
        {
            assert_eq!(
                inbound(st(state), kind),
                (action, st(next)),
                "inbound {kind:?} in {state}"
            );
        }
    }

    #[test]
    fn im_subtab_01_none() {
        row_a(
            "N",
            [(true, "N+PO"), (true, "N"), (false, "N"), (false, "N")],
        );
    }
    #[test]
    fn im_subtab_01_none_pending_out() {
        row_a(
            "N+PO",
            [
                (true, "N+PO"),
                (true, "N"),
                (false, "N+PO"),
                (false, "N+PO"),
            ],
        );
    }
    #[test]
    fn im_subtab_01_none_pending_in() {
        row_a(
            "N+PI",
            [
                (true, "N+PO+PI"),
                (true, "N+PI"),
                (true, "From"),
                (true, "N"),
            ],
        );
    }
    #[test]
    fn im_subtab_01_none_pending_out_in() {
        row_a(
            "N+PO+PI",
            [
                (true, "N+PO+PI"),
                (true, "N+PI"),
                (true, "From+PO"),
                (true, "N+PO"),
            ],
        );
    }
    #[test]
    fn im_subtab_01_to() {
        row_a(
            "To",
            [(true, "To"), (true, "N"), (false, "To"), (false, "To")],
        );
    }
    #[test]
    fn im_subtab_01_to_pending_in() {
        row_a(
            "To+PI",
            [
                (true, "To+PI"),
                (true, "N+PI"),
                (true, "Both"),
                (true, "To"),
            ],
        );
    }
    #[test]
    fn im_subtab_01_from() {
        row_a(
            "From",
            [
                (true, "From+PO"),
                (true, "From"),
                (false, "From"),
                (true, "N"),
            ],
        );
    }
    #[test]
    fn im_subtab_01_from_pending_out() {
        row_a(
            "From+PO",
            [
                (true, "From+PO"),
                (true, "From"),
                (false, "From+PO"),
                (true, "N+PO"),
            ],
        );
    }
    #[test]
    fn im_subtab_01_both() {
        row_a(
            "Both",
            [
                (true, "Both"),
                (true, "From"),
                (false, "Both"),
                (true, "To"),
            ],
        );
    }

    #[test]
    fn im_subtab_02_none() {
        row_b("N", [(D, "N+PI"), (X, "N"), (X, "N"), (X, "N")]);
    }
    #[test]
    fn im_subtab_02_none_pending_out() {
        row_b("N+PO", [(D, "N+PO+PI"), (X, "N+PO"), (D, "To"), (D, "N")]);
    }
    #[test]
    fn im_subtab_02_none_pending_in() {
        row_b("N+PI", [(X, "N+PI"), (D, "N"), (X, "N+PI"), (X, "N+PI")]);
    }
    #[test]
    fn im_subtab_02_none_pending_out_in() {
        row_b(
            "N+PO+PI",
            [(X, "N+PO+PI"), (D, "N+PO"), (D, "To+PI"), (D, "N+PI")],
        );
    }
    #[test]
    fn im_subtab_02_to() {
        row_b("To", [(D, "To+PI"), (X, "To"), (X, "To"), (D, "N")]);
    }
    #[test]
    fn im_subtab_02_to_pending_in() {
        row_b(
            "To+PI",
            [(X, "To+PI"), (D, "To"), (X, "To+PI"), (D, "N+PI")],
        );
    }
    #[test]
    fn im_subtab_02_from() {
        row_b("From", [(AR, "From"), (D, "N"), (X, "From"), (X, "From")]);
    }
    #[test]
    fn im_subtab_02_from_pending_out() {
        row_b(
            "From+PO",
            [(AR, "From+PO"), (D, "N+PO"), (D, "Both"), (D, "From")],
        );
    }
    #[test]
    fn im_subtab_02_both() {
        row_b("Both", [(AR, "Both"), (D, "To"), (X, "Both"), (D, "From")]);
    }
}
