//! A message's life: scheduled/queued → sending → sent | deferred | failed, or cancelled.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for its `send_at`.
    Scheduled,
    /// Due; waiting for a worker.
    Queued,
    /// Claimed by a worker under a lease.
    Sending,
    /// Every recipient accepted or permanently refused, at least one accepted.
    Sent,
    /// A temporary failure; will be retried.
    Deferred,
    /// Permanently refused, or out of retries.
    Failed,
    Cancelled,
}

impl MessageStatus {
    pub const ALL: [Self; 7] =
        [Self::Scheduled, Self::Queued, Self::Sending, Self::Sent, Self::Deferred, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Deferred => "deferred",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == input)
    }

    /// Waiting to be claimed once due.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Scheduled | Self::Queued | Self::Deferred)
    }

    /// Can still be cancelled: not yet being sent and not finished.
    pub fn can_cancel(self) -> bool {
        self.is_waiting()
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus;

    #[test]
    fn names_round_trip() {
        for s in MessageStatus::ALL {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(MessageStatus::parse("lost"), None);
    }

    #[test]
    fn only_waiting_messages_can_be_cancelled() {
        let cancellable: Vec<_> = MessageStatus::ALL.into_iter().filter(|s| s.can_cancel()).collect();
        assert_eq!(cancellable, [MessageStatus::Scheduled, MessageStatus::Queued, MessageStatus::Deferred]);
    }
}
