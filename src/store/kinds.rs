//! The names the store keeps in text columns, decoded into enums: an
//! event's kind (`events.kind`) and a hook delivery's state
//! (`hook_deliveries.state`). A stored name that is none of these is an
//! error when read, never a row skipped.

/// What an event in the inbox says, as the receiver classified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `member_removed`: an admin removed a member.
    MemberRemoved,
    /// `member_left`: a member left by themselves.
    MemberLeft,
    /// `link_changed`: the group's link changed elsewhere.
    LinkChanged,
    /// `state`: the instance's connection changed.
    State,
    /// `unparsed`: kept as received, for inspection.
    Unparsed,
    /// `other`: a group event we do not act on.
    Other,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 6] = [
        EventKind::MemberRemoved,
        EventKind::MemberLeft,
        EventKind::LinkChanged,
        EventKind::State,
        EventKind::Unparsed,
        EventKind::Other,
    ];

    /// The name stored in `events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MemberRemoved => "member_removed",
            EventKind::MemberLeft => "member_left",
            EventKind::LinkChanged => "link_changed",
            EventKind::State => "state",
            EventKind::Unparsed => "unparsed",
            EventKind::Other => "other",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Where a hook's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// `pending`: to be tried (again).
    Pending,
    /// `delivered`: the hook took it.
    Delivered,
    /// `abandoned`: given up (out of tries, or the hook is gone).
    Abandoned,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Abandoned,
    ];

    /// The name stored in `hook_deliveries.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Abandoned => "abandoned",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

super::model::decoded_from_text!(EventKind: "event kind", DeliveryState: "delivery state");

impl PartialEq<str> for EventKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for DeliveryState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for DeliveryState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_itself_and_an_unknown_one_is_an_error() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::try_from(k.as_str().to_owned()).unwrap(), k);
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::try_from(s.as_str().to_owned()).unwrap(), s);
        }
        let e = EventKind::try_from("member_kicked".to_owned()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"member_kicked\" is not a stored event kind name"
        );
        assert!(DeliveryState::try_from("sent".to_owned()).is_err());
    }
}
