//! Delivery results as data: SMTP replies, what a failure means, and the
//! message's status once every recipient has an outcome.

use std::fmt;

/// An SMTP reply: its code and its text (enhanced status code included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Self { code, text: text.into() }
    }

    pub fn class(&self) -> ReplyClass {
        match self.code {
            200..=399 => ReplyClass::Positive,
            500..=599 => ReplyClass::Permanent,
            _ => ReplyClass::Temporary,
        }
    }

    /// A refusal of the message for good. Not 530 (authentication or
    /// STARTTLS required): that is the settings' fault, whatever the command.
    pub fn refuses_for_good(&self) -> bool {
        self.class() == ReplyClass::Permanent && self.code != 530
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// The reply code classes of RFC 5321: 2xx/3xx go on, 4xx try again later, 5xx give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyClass {
    Positive,
    Temporary,
    Permanent,
}

/// Where in the session something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before any network: the settings in force could not be used.
    Settings,
    Dns,
    /// Reaching the proxy.
    Proxy,
    /// The proxy's login and its tunnel to the server.
    Tunnel,
    Connect,
    Tls,
    Greeting,
    Ehlo,
    StartTls,
    /// Obtaining the XOAUTH2 bearer token.
    Token,
    Auth,
    MailFrom,
    RcptTo,
    Data,
    /// After the final dot: the server may already hold the message.
    DataEnd,
    /// A local transport taking the message (sendmail, pickup, capture).
    Handoff,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Settings => "settings",
            Self::Dns => "dns",
            Self::Proxy => "proxy",
            Self::Tunnel => "tunnel",
            Self::Connect => "tcp",
            Self::Tls => "tls",
            Self::Greeting => "greeting",
            Self::Ehlo => "ehlo",
            Self::StartTls => "starttls",
            Self::Token => "token",
            Self::Auth => "auth",
            Self::MailFrom => "mail",
            Self::RcptTo => "rcpt",
            Self::Data => "data",
            Self::DataEnd => "data_end",
            Self::Handoff => "handoff",
        }
    }
}

/// Why a session or a transaction did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Name resolution, connection refused or reset, a closed connection.
    Network { stage: Stage, detail: String },
    /// The server did not answer within `timeout_s`.
    Timeout { stage: Stage },
    /// The TLS handshake failed (certificate, name, protocol).
    Tls { detail: String },
    /// The settings in force cannot be used (none configured, a stored password that does not open).
    Settings { detail: String },
    /// The server lacks something the settings require (STARTTLS, an AUTH mechanism).
    Unsupported { stage: Stage, detail: String },
    /// The server answered with a negative reply.
    Reply { stage: Stage, reply: Reply },
    /// A proxy or a token endpoint said no, in its own words.
    Refused { stage: Stage, detail: String },
    /// A local transport did not take the message; `permanent` when it never will.
    Handoff { permanent: bool, detail: String },
}

impl Failure {
    /// Only a 5xx reply about the message itself (at MAIL, RCPT or DATA) is
    /// permanent. A 5xx before that (a refused greeting, EHLO, STARTTLS or
    /// login) says the server will not talk to us as configured: a settings
    /// problem the operator can fix, so the queue waits for the fix (as
    /// Postfix's `smtp_sasl_auth_soft_bounce` does) rather than failing every
    /// message.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Reply { stage: Stage::MailFrom | Stage::RcptTo | Stage::Data | Stage::DataEnd, reply } => {
                reply.refuses_for_good()
            }
            Self::Handoff { permanent, .. } => *permanent,
            _ => false,
        }
    }

    pub fn stage(&self) -> Stage {
        match self {
            Self::Network { stage, .. }
            | Self::Timeout { stage }
            | Self::Reply { stage, .. }
            | Self::Unsupported { stage, .. }
            | Self::Refused { stage, .. } => *stage,
            Self::Handoff { .. } => Stage::Handoff,
            Self::Tls { .. } => Stage::Tls,
            Self::Settings { .. } => Stage::Settings,
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Self::Reply { reply, .. } => Some(reply),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network { stage, detail } => {
                write!(f, "network error at {}: {detail}", stage.as_str())
            }
            Self::Timeout { stage } => write!(f, "no answer from the server at {} within the timeout", stage.as_str()),
            Self::Tls { detail } => write!(f, "TLS handshake failed: {detail}"),
            Self::Unsupported { detail, .. }
            | Self::Settings { detail }
            | Self::Refused { detail, .. }
            | Self::Handoff { detail, .. } => f.write_str(detail),
            Self::Reply { stage, reply } => {
                write!(f, "server replied at {}: {reply}", stage.as_str())
            }
        }
    }
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    /// Not yet accepted: never tried, or refused temporarily.
    Pending,
    /// Accepted by the server at the end of DATA.
    Sent,
    /// Refused permanently.
    Failed,
}

impl RecipientState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed].into_iter().find(|s| s.as_str() == input)
    }
}

/// The message's outcome after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Every recipient has a final answer and at least one accepted it.
    Sent,
    /// Some recipients are still pending: try again later.
    Deferred,
    /// Every recipient refused it permanently.
    Failed,
}

/// Settles a message from its recipients' states.
pub fn settle(states: impl IntoIterator<Item = RecipientState>) -> Settled {
    let (mut pending, mut sent) = (false, false);
    for state in states {
        pending |= state == RecipientState::Pending;
        sent |= state == RecipientState::Sent;
    }
    match (pending, sent) {
        (true, _) => Settled::Deferred,
        (false, true) => Settled::Sent,
        (false, false) => Settled::Failed,
    }
}

/// One SMTP transaction: each recipient's answer to RCPT (accepted or
/// refused), then the answer after DATA when at least one was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub rcpt: Vec<Result<Reply, Reply>>,
    pub data: Option<Result<Reply, Failure>>,
}

/// A recipient's new state after an attempt, and the answer that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientResult {
    pub state: RecipientState,
    pub code: Option<u16>,
    pub reply: String,
}

impl RecipientResult {
    fn from_reply(state: RecipientState, reply: &Reply) -> Self {
        Self { state, code: Some(reply.code), reply: reply.text.clone() }
    }

    fn from_failure(failure: &Failure) -> Self {
        let state = if failure.is_permanent() { RecipientState::Failed } else { RecipientState::Pending };
        match failure.reply() {
            Some(reply) => Self::from_reply(state, reply),
            None => Self { state, code: None, reply: failure.to_string() },
        }
    }
}

/// What an attempt means for each of the `count` recipients it was for:
/// a session that failed before the transaction decides for all of them;
/// otherwise each RCPT answer, then the DATA answer for the accepted ones.
pub fn recipient_results(attempt: &Result<Transaction, Failure>, count: usize) -> Vec<RecipientResult> {
    match attempt {
        Err(failure) => vec![RecipientResult::from_failure(failure); count],
        Ok(t) => t
            .rcpt
            .iter()
            .map(|rcpt| match (rcpt, &t.data) {
                (Err(refused), _) => {
                    let state =
                        if refused.refuses_for_good() { RecipientState::Failed } else { RecipientState::Pending };
                    RecipientResult::from_reply(state, refused)
                }
                (Ok(_), Some(Ok(accepted))) => RecipientResult::from_reply(RecipientState::Sent, accepted),
                (Ok(_), Some(Err(failure))) => RecipientResult::from_failure(failure),
                (Ok(accepted), None) => RecipientResult::from_reply(RecipientState::Pending, accepted),
            })
            .collect(),
    }
}

/// What an attempt leaves the message with: its status and, when deferred, the next try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conclusion {
    pub settled: Settled,
    pub next_attempt: Option<time::OffsetDateTime>,
    /// The maximum queue lifetime ran out: pending recipients failed.
    pub gave_up: bool,
}

pub const GAVE_UP: &str = "gave up after the maximum queue lifetime; last answer: ";

/// Settles a message after an attempt. `results` are the new states of the
/// recipients tried, `earlier` the states of the others (already final).
/// A message still pending is retried on `retry`'s schedule until its
/// lifetime ends; then what is still pending fails, keeping the last answer.
pub fn conclude(
    results: &mut [RecipientResult],
    earlier: &[RecipientState],
    retry: &crate::retry::RetryPolicy,
    failures: u32,
    due_since: time::OffsetDateTime,
    now: time::OffsetDateTime,
    jitter: f64,
) -> Conclusion {
    let states = |results: &[RecipientResult]| {
        results.iter().map(|r| r.state).chain(earlier.iter().copied()).collect::<Vec<_>>()
    };
    let settled = settle(states(results));
    if settled != Settled::Deferred {
        return Conclusion { settled, next_attempt: None, gave_up: false };
    }
    if let Some(next) = retry.next_attempt(failures, due_since, now, jitter) {
        return Conclusion { settled, next_attempt: Some(next), gave_up: false };
    }
    for r in results.iter_mut().filter(|r| r.state == RecipientState::Pending) {
        r.state = RecipientState::Failed;
        r.reply = format!("{GAVE_UP}{}", r.reply);
    }
    Conclusion { settled: settle(states(results)), next_attempt: None, gave_up: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RecipientState::*;

    #[test]
    fn reply_classes() {
        assert_eq!(Reply::new(250, "ok").class(), ReplyClass::Positive);
        assert_eq!(Reply::new(354, "go").class(), ReplyClass::Positive);
        assert_eq!(Reply::new(451, "later").class(), ReplyClass::Temporary);
        assert_eq!(Reply::new(550, "no").class(), ReplyClass::Permanent);
    }

    #[test]
    fn what_is_permanent() {
        let reply = |stage, code| Failure::Reply { stage, reply: Reply::new(code, "x") };
        assert!(reply(Stage::RcptTo, 550).is_permanent());
        assert!(reply(Stage::DataEnd, 554).is_permanent());
        assert!(!reply(Stage::Greeting, 554).is_permanent(), "a server refusing to talk is a settings problem");
        assert!(!reply(Stage::Ehlo, 550).is_permanent());
        assert!(!reply(Stage::Auth, 535).is_permanent(), "a wrong password waits for the operator's fix");
        assert!(!reply(Stage::DataEnd, 451).is_permanent());
        assert!(!Failure::Timeout { stage: Stage::DataEnd }.is_permanent());
        assert!(!Failure::Tls { detail: "bad name".into() }.is_permanent());
        assert!(!Failure::Network { stage: Stage::Connect, detail: "refused".into() }.is_permanent());
        let auth_required = Reply::new(530, "5.7.57 Client not authenticated to send mail");
        assert!(!Failure::Reply { stage: Stage::MailFrom, reply: auth_required.clone() }.is_permanent());
        assert!(!Failure::Reply { stage: Stage::RcptTo, reply: auth_required }.is_permanent());
        assert!(Failure::Handoff { permanent: true, detail: "sendmail exited with status 67".into() }.is_permanent());
        assert!(!Failure::Handoff { permanent: false, detail: "sendmail exited with status 75".into() }.is_permanent());
        assert!(!Failure::Refused { stage: Stage::Token, detail: "invalid_grant".into() }.is_permanent());
    }

    #[test]
    fn each_recipient_gets_its_own_outcome() {
        let ok = Reply::new(250, "2.1.5 OK");
        let attempt = Ok(Transaction {
            rcpt: vec![Ok(ok.clone()), Err(Reply::new(550, "5.1.1 no such user")), Err(Reply::new(451, "4.3.0 later"))],
            data: Some(Ok(Reply::new(250, "2.0.0 queued"))),
        });
        let states: Vec<_> = recipient_results(&attempt, 3).into_iter().map(|r| (r.state, r.code)).collect();
        assert_eq!(states, [(Sent, Some(250)), (Failed, Some(550)), (Pending, Some(451))]);

        let refused_data = Ok(Transaction {
            rcpt: vec![Ok(ok)],
            data: Some(Err(Failure::Reply { stage: Stage::DataEnd, reply: Reply::new(554, "5.7.1 spam") })),
        });
        assert_eq!(recipient_results(&refused_data, 1)[0].state, Failed);

        let lost = Err(Failure::Timeout { stage: Stage::Greeting });
        let results = recipient_results(&lost, 2);
        assert!(results.iter().all(|r| r.state == Pending && r.code.is_none() && r.reply.contains("greeting")));
    }

    #[test]
    fn a_pending_message_is_retried_until_its_lifetime_ends() {
        use crate::retry::RetryPolicy;
        use time::macros::datetime;
        let retry = RetryPolicy::default();
        let t0 = datetime!(2026-11-25 12:00 UTC);
        let later = |r: &str| RecipientResult { state: Pending, code: Some(451), reply: r.to_owned() };

        let mut results = [later("4.3.0 busy")];
        let c = conclude(&mut results, &[], &retry, 1, t0, t0, 0.5);
        assert_eq!((c.settled, c.gave_up), (Settled::Deferred, false));
        assert_eq!(c.next_attempt, Some(t0 + retry.first_delay));

        let end = t0 + retry.max_lifetime;
        let c = conclude(&mut results, &[Sent], &retry, 40, t0, end, 0.5);
        assert_eq!((c.settled, c.gave_up, c.next_attempt), (Settled::Sent, true, None), "another recipient got it");
        assert_eq!(results[0].state, Failed);
        assert_eq!(results[0].reply, format!("{GAVE_UP}4.3.0 busy"));

        let mut alone = [later("4.3.0 busy")];
        assert_eq!(conclude(&mut alone, &[], &retry, 40, t0, end, 0.5).settled, Settled::Failed);
    }

    #[test]
    fn settles_from_recipients() {
        assert_eq!(settle([Sent, Sent]), Settled::Sent);
        assert_eq!(settle([Sent, Failed]), Settled::Sent);
        assert_eq!(settle([Sent, Pending]), Settled::Deferred);
        assert_eq!(settle([Failed, Pending]), Settled::Deferred);
        assert_eq!(settle([Failed, Failed]), Settled::Failed);
    }
}
