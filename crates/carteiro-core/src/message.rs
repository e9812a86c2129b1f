//! A message as an application submits it (`MessageIn`, the wire shape of
//! SPEC §7) and as carteiro carries it once parsed (`NewMessage`).

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::address::{DisplayName, EmailAddress, Mailbox};
use crate::error::{FieldError, FieldErrors, check_header_text};
use crate::id::UserRef;

/// A mailbox as JSON gives it: `"Ana <ana@acme.example>"` or `{"name": "Ana", "address": "ana@acme.example"}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MailboxIn {
    Text(String),
    Parts { name: Option<String>, address: String },
}

impl MailboxIn {
    fn parse(&self, field: &str) -> Result<Mailbox, FieldError> {
        match self {
            Self::Text(text) => Mailbox::parse(field, text),
            Self::Parts { name, address } => Mailbox::from_parts(field, name.as_deref(), address),
        }
    }
}

/// Platforms name their users with strings or numbers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IdIn {
    Text(String),
    Number(i64),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorIn {
    pub id: IdIn,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    pub filename: String,
    pub content_type: Option<String>,
    pub content_base64: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
#[schema(example = json!({
    "kind": "user", "to": ["a@example.com"], "subject": "Task 17 moved", "text": "Task 17 was moved to Done.",
    "html": "<p>Task 17 was moved to <b>Done</b>.</p>",
    "actor": {"id": "42", "name": "Ana Souza", "address": "ana@acme.example"},
    "headers": {"X-Workflow": "17"},
    "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGVsbG8="}],
    "idempotency_key": "wf-17-move-3", "tags": ["workflow"]
}))]
pub struct MessageIn {
    pub kind: Option<String>,
    pub to: Vec<MailboxIn>,
    pub cc: Vec<MailboxIn>,
    pub bcc: Vec<MailboxIn>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub actor: Option<ActorIn>,
    pub from: Option<MailboxIn>,
    pub reply_to: Option<MailboxIn>,
    pub headers: BTreeMap<String, String>,
    pub attachments: Vec<AttachmentIn>,
    /// When to send, in RFC 3339; now when left out.
    #[schema(format = DateTime)]
    pub send_at: Option<String>,
    pub idempotency_key: Option<String>,
    pub tags: Vec<String>,
}

/// The person who triggered a `user` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: UserRef,
    pub name: Option<DisplayName>,
    pub address: EmailAddress,
}

impl Actor {
    pub fn mailbox(&self) -> Mailbox {
        Mailbox::new(self.name.clone(), self.address.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// No acting user: account creation, password recovery, connection tests.
    System,
    /// Triggered by a person.
    User(Actor),
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User(_) => "user",
        }
    }

    pub fn actor(&self) -> Option<&Actor> {
        match self {
            Self::System => None,
            Self::User(actor) => Some(actor),
        }
    }
}

/// A custom header: a field name of printable ASCII without ':' that carteiro
/// does not set itself, and a one-line value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    pub name: String,
    pub value: String,
}

/// Headers that the sender rules and the MIME builder own.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "return-path",
    "received",
    "dkim-signature",
];

impl HeaderLine {
    pub fn parse(name: &str, value: &str) -> Result<Self, FieldError> {
        let field = format!("headers.{name}");
        if name.is_empty() || name.len() > 76 || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            return Err(FieldError::new(
                &field,
                format!("{field}: a header name must be 1 to 76 printable ASCII characters without ':' or spaces"),
            ));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(FieldError::new(
                &field,
                format!("{field} is set by carteiro; use the message's own fields (from, reply_to, to, subject …)"),
            ));
        }
        check_header_text(&field, value)?;
        if value.len() > 998 {
            return Err(FieldError::new(&field, format!("{field} must be at most 998 octets")));
        }
        Ok(Self { name: name.to_owned(), value: value.to_owned() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub content: Vec<u8>,
}

impl Attachment {
    fn parse(field: &str, input: &AttachmentIn) -> Result<Self, FieldError> {
        let name_field = format!("{field}.filename");
        let filename = input.filename.trim();
        check_header_text(&name_field, filename)?;
        if filename.is_empty() || filename.chars().count() > 255 || filename.contains(['/', '\\']) {
            return Err(FieldError::new(
                &name_field,
                format!("{name_field} must be 1 to 255 characters without '/' or '\\'"),
            ));
        }
        let type_field = format!("{field}.content_type");
        let content_type = input.content_type.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let content_type = content_type.unwrap_or("application/octet-stream").to_ascii_lowercase();
        // RFC 6838 §4.2: a type or subtype name is at most 127 characters (which also keeps the
        // Content-Type line within the 998 octets a message's lines may have).
        let token = |s: &str| {
            (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !content_type.split_once('/').is_some_and(|(t, s)| token(t) && token(s)) {
            return Err(FieldError::new(
                &type_field,
                format!(
                    "{type_field} must be a media type such as application/pdf (a type and a subtype of at most 127 characters each), got {:?}",
                    input.content_type.as_deref().unwrap_or_default()
                ),
            ));
        }
        let content_field = format!("{field}.content_base64");
        let compact: String = input.content_base64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let content = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| FieldError::new(&content_field, format!("{content_field} is not valid base64")))?;
        Ok(Self { filename: filename.to_owned(), content_type, content })
    }
}

/// Every line break of a body (CRLF, LF or a lone CR) as one LF, which the MIME
/// builder writes as CRLF: a lone CR must never reach the wire, where some
/// servers would take `CR . CRLF` for the end of the message (SMTP smuggling).
fn line_breaks_as_lf(body: &str) -> String {
    body.replace("\r\n", "\n").replace('\r', "\n")
}

/// A key that makes a submission safe to repeat: 1 to 255 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        if input.is_empty() || input.chars().count() > 255 || input.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                format!("{field} must be 1 to 255 characters without control characters"),
            ));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Limits an operator may change (`--max-recipients`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_recipients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_recipients: 100 }
    }
}

/// A submitted message, every field valid. The sender is not decided here:
/// that needs the company's settings (see [`crate::sender`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub kind: Kind,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub headers: Vec<HeaderLine>,
    pub attachments: Vec<Attachment>,
    pub send_at: Option<OffsetDateTime>,
    pub idempotency_key: Option<IdempotencyKey>,
    pub tags: Vec<String>,
}

impl NewMessage {
    /// Parses a submission, reporting every invalid field.
    pub fn parse(input: &MessageIn, limits: Limits) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let kind = match input.kind.as_deref() {
            Some("system") => {
                if input.actor.is_some() {
                    errors.push(FieldError::new(
                        "actor",
                        "actor is only for user messages; system messages have no acting user",
                    ));
                }
                if input.from.is_some() {
                    errors.push(FieldError::new(
                        "from",
                        "from is only for user messages; system messages use the default sender",
                    ));
                }
                Some(Kind::System)
            }
            Some("user") => match &input.actor {
                Some(actor) => errors.check(parse_actor(actor)).map(Kind::User),
                None => {
                    errors.push(FieldError::new("actor", "actor (id, name, address) is required for user messages"));
                    None
                }
            },
            Some(other) => {
                errors.push(FieldError::new("kind", format!("kind must be one of system, user, got {other:?}")));
                None
            }
            None => {
                errors.push(FieldError::new("kind", "kind is required: system or user"));
                None
            }
        };
        let mut mailboxes = |field: &str, list: &[MailboxIn]| -> Vec<Mailbox> {
            list.iter().enumerate().filter_map(|(i, m)| errors.check(m.parse(&format!("{field}[{i}]")))).collect()
        };
        let to = mailboxes("to", &input.to);
        let cc = mailboxes("cc", &input.cc);
        let bcc = mailboxes("bcc", &input.bcc);
        let recipients = input.to.len() + input.cc.len() + input.bcc.len();
        if recipients == 0 {
            errors.push(FieldError::new("to", "to must name at least one recipient (or cc/bcc)"));
        } else if recipients > limits.max_recipients {
            errors.push(FieldError::new(
                "to",
                format!(
                    "a message may have at most {} recipients (to, cc and bcc together), got {recipients}",
                    limits.max_recipients
                ),
            ));
        }
        let subject = input.subject.as_deref().unwrap_or_default().trim();
        errors.check(check_header_text("subject", subject));
        if subject.chars().count() > 998 {
            errors.push(FieldError::new("subject", "subject must be at most 998 characters"));
        }
        if input.text.is_none() && input.html.is_none() {
            errors.push(FieldError::new("text", "text or html is required"));
        }
        let from = input.from.as_ref().and_then(|f| errors.check(f.parse("from")));
        let reply_to = input.reply_to.as_ref().and_then(|r| errors.check(r.parse("reply_to")));
        let headers: Vec<HeaderLine> =
            input.headers.iter().filter_map(|(name, value)| errors.check(HeaderLine::parse(name, value))).collect();
        let attachments: Vec<Attachment> = input
            .attachments
            .iter()
            .enumerate()
            .filter_map(|(i, a)| errors.check(Attachment::parse(&format!("attachments[{i}]"), a)))
            .collect();
        let send_at = input.send_at.as_deref().and_then(|s| {
            errors.check(OffsetDateTime::parse(s.trim(), &Rfc3339).map_err(|_| {
                FieldError::new(
                    "send_at",
                    format!("send_at must be an RFC 3339 date-time such as 2026-11-25T13:00:00Z, got {s:?}"),
                )
            }))
        });
        let idempotency_key =
            input.idempotency_key.as_deref().and_then(|k| errors.check(IdempotencyKey::parse("idempotency_key", k)));
        if input.tags.len() > 20 {
            errors.push(FieldError::new("tags", "a message may carry at most 20 tags"));
        }
        for (i, tag) in input.tags.iter().enumerate() {
            let field = format!("tags[{i}]");
            if tag.is_empty() || tag.chars().count() > 64 || tag.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    &field,
                    format!("{field} must be 1 to 64 characters without control characters"),
                ));
            }
        }
        match kind {
            Some(kind) if errors.is_empty() => Ok(Self {
                kind,
                to,
                cc,
                bcc,
                subject: subject.to_owned(),
                text: input.text.as_deref().map(line_breaks_as_lf),
                html: input.html.as_deref().map(line_breaks_as_lf),
                from,
                reply_to,
                headers,
                attachments,
                send_at,
                idempotency_key,
                tags: input.tags.clone(),
            }),
            _ => Err(errors),
        }
    }

    /// Every recipient with the list it came from, in order.
    pub fn recipients(&self) -> impl Iterator<Item = (RecipientKind, &Mailbox)> {
        let tag = |kind: RecipientKind| move |m| (kind, m);
        self.to
            .iter()
            .map(tag(RecipientKind::To))
            .chain(self.cc.iter().map(tag(RecipientKind::Cc)))
            .chain(self.bcc.iter().map(tag(RecipientKind::Bcc)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientKind {
    To,
    Cc,
    Bcc,
}

impl RecipientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::To => "to",
            Self::Cc => "cc",
            Self::Bcc => "bcc",
        }
    }

    pub fn parse(input: &str) -> Option<Self> {
        [Self::To, Self::Cc, Self::Bcc].into_iter().find(|k| k.as_str() == input)
    }
}

fn parse_actor(input: &ActorIn) -> Result<Actor, FieldError> {
    let id = match &input.id {
        IdIn::Text(s) => s.clone(),
        IdIn::Number(n) => n.to_string(),
    };
    let address = input
        .address
        .as_deref()
        .ok_or_else(|| FieldError::new("actor.address", "actor.address is required for user messages"))?;
    Ok(Actor {
        id: UserRef::parse("actor.id", &id)?,
        name: match &input.name {
            Some(n) => DisplayName::parse("actor.name", n)?,
            None => None,
        },
        address: EmailAddress::parse("actor.address", address)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<NewMessage, FieldErrors> {
        let input: MessageIn = serde_json::from_value(json).expect("wire shape");
        NewMessage::parse(&input, Limits::default())
    }

    fn first_error(json: serde_json::Value) -> FieldError {
        parse(json).expect_err("must be refused").0.remove(0)
    }

    #[test]
    fn parses_the_contract_example() {
        let m = parse(serde_json::json!({
            "kind": "user", "to": ["a@example.com"], "cc": [], "bcc": [],
            "subject": "Task 17 moved", "text": "…", "html": "<p>…</p>",
            "actor": {"id": "42", "name": "Ana Souza", "address": "ana@acme.example"},
            "from": null, "reply_to": null, "headers": {"X-Workflow": "17"},
            "attachments": [{"filename": "a.pdf", "content_type": "application/pdf", "content_base64": "JVBERi0="}],
            "send_at": "2026-11-25T13:00:00Z", "idempotency_key": "wf-17-move-3", "tags": ["workflow"]
        }))
        .unwrap();
        assert_eq!(m.kind.actor().unwrap().id.as_str(), "42");
        assert_eq!(m.attachments[0].content, b"%PDF-");
        assert_eq!(m.headers[0].name, "X-Workflow");
        assert_eq!(m.send_at.unwrap().unix_timestamp(), 1_795_611_600);
    }

    #[test]
    fn refuses_each_bad_field_by_name() {
        let base = serde_json::json!({"kind": "system", "to": ["a@example.com"], "subject": "s", "text": "t"});
        let with = |key: &str, value: serde_json::Value| {
            let mut doc = base.clone();
            doc[key] = value;
            doc
        };
        let cases = [
            (with("kind", "robot".into()), "kind"),
            (with("to", serde_json::json!(["not-an-address"])), "to[0]"),
            (with("to", serde_json::json!([])), "to"),
            (with("cc", serde_json::json!(["ok@example.com", "x@@y"])), "cc[1]"),
            (with("subject", "Hi\r\nBcc: evil@example.com".into()), "subject"),
            (with("headers", serde_json::json!({"X-A": "1\nX-B: 2"})), "headers.X-A"),
            (with("headers", serde_json::json!({"Bcc": "evil@example.com"})), "headers.Bcc"),
            (with("headers", serde_json::json!({"Bad Name": "v"})), "headers.Bad Name"),
            (with("send_at", "tomorrow".into()), "send_at"),
            (with("reply_to", "Ana\n <a@example.com>".into()), "reply_to"),
            (
                with("attachments", serde_json::json!([{"filename": "a\r\n.pdf", "content_base64": ""}])),
                "attachments[0].filename",
            ),
            (
                with("attachments", serde_json::json!([{"filename": "a.pdf", "content_base64": "%%%"}])),
                "attachments[0].content_base64",
            ),
            (
                with(
                    "attachments",
                    serde_json::json!([{"filename": "a.pdf", "content_type": "pdf", "content_base64": ""}]),
                ),
                "attachments[0].content_type",
            ),
            (with("idempotency_key", "".into()), "idempotency_key"),
            (with("actor", serde_json::json!({"id": "1", "address": "a@example.com"})), "actor"),
            (with("from", "boss@example.com".into()), "from"),
        ];
        for (doc, field) in cases {
            let e = first_error(doc.clone());
            assert_eq!(e.field, field, "{doc}");
            assert!(e.message.contains(field.split('.').next().unwrap().split('[').next().unwrap()), "{}", e.message);
        }
        let user = serde_json::json!({"kind": "user", "to": ["a@example.com"], "text": "t", "actor": {"id": "a b", "address": "a@example.com"}});
        assert_eq!(first_error(user).field, "actor.id");
        assert_eq!(
            first_error(serde_json::json!({"kind": "user", "to": ["a@example.com"], "text": "t"})).field,
            "actor"
        );
        assert_eq!(first_error(serde_json::json!({"kind": "system", "to": ["a@example.com"]})).field, "text");
    }

    /// Found by the mime_build fuzz target: a 1 000-character media type made a Content-Type line over 998 octets.
    #[test]
    fn refuses_a_media_type_name_over_127_characters() {
        let attachment = |content_type: String| {
            serde_json::json!({"kind": "system", "to": ["a@example.com"], "text": "t",
                "attachments": [{"filename": "a.pdf", "content_type": content_type, "content_base64": "JVBERi0="}]})
        };
        assert!(parse(attachment(format!("application/{}", "x".repeat(127)))).is_ok());
        let e = first_error(attachment(format!("application{}/pdf", "x".repeat(1000))));
        assert_eq!(e.field, "attachments[0].content_type");
        assert!(e.message.contains("at most 127 characters"), "{}", e.message);
        assert_eq!(
            first_error(attachment(format!("application/{}", "x".repeat(128)))).field,
            "attachments[0].content_type"
        );
    }

    /// Found by the mime_build fuzz target: a lone CR in a text body reached the wire as it was.
    #[test]
    fn every_line_break_of_a_body_becomes_one_lf() {
        let m = parse(serde_json::json!({"kind": "system", "to": ["a@example.com"],
            "text": "um\r\ndois\rtrês\n\r.\r\nMAIL FROM:<x@y.z>", "html": "<p>a</p>\r<p>b</p>"}))
        .unwrap();
        assert_eq!(m.text.as_deref(), Some("um\ndois\ntrês\n\n.\nMAIL FROM:<x@y.z>"));
        assert_eq!(m.html.as_deref(), Some("<p>a</p>\n<p>b</p>"));
    }

    #[test]
    fn limits_recipients() {
        let to: Vec<String> = (0..101).map(|i| format!("r{i}@example.com")).collect();
        let e = first_error(serde_json::json!({"kind": "system", "to": to, "text": "t"}));
        assert_eq!(e.field, "to");
        assert!(e.message.contains("at most 100"), "{}", e.message);
    }

    #[test]
    fn reports_every_error_at_once() {
        let errors = parse(serde_json::json!({"kind": "system", "to": ["x"], "subject": "a\nb"})).unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["to[0]", "subject", "text"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn any_text() -> impl Strategy<Value = String> {
            prop_oneof!["\\PC{0,40}", "[a-z]{1,8}@[a-z]{1,8}\\.example", ".{0,20}[\r\n].{0,20}"]
        }

        proptest! {
            #[test]
            fn parsing_never_panics_and_no_header_field_keeps_a_line_break(
                subject in any_text(), to in any_text(), name in any_text(), header in any_text(), filename in any_text(),
            ) {
                let input = MessageIn {
                    kind: Some("user".into()),
                    to: vec![MailboxIn::Text(to)],
                    subject: Some(subject),
                    text: Some("body".into()),
                    actor: Some(ActorIn { id: IdIn::Number(7), name: Some(name), address: Some("ana@acme.example".into()) }),
                    headers: BTreeMap::from([("X-Test".to_owned(), header)]),
                    attachments: vec![AttachmentIn { filename, content_type: None, content_base64: "aGk=".into() }],
                    ..MessageIn::default()
                };
                if let Ok(m) = NewMessage::parse(&input, Limits::default()) {
                    let actor = m.kind.actor().unwrap();
                    let fields = [m.subject.clone(), m.to[0].to_string(), actor.mailbox().to_string(), m.headers[0].value.clone(), m.attachments[0].filename.clone()];
                    for field in fields {
                        prop_assert!(!field.contains(['\r', '\n']), "{field:?}");
                    }
                }
            }
        }
    }
}
