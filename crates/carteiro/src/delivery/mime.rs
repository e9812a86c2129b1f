//! The MIME message carteiro stores at submission and sends unchanged on
//! every attempt (so retries keep the same Message-ID and Date).

use carteiro_core::Mailbox;
use carteiro_core::message::NewMessage;
use carteiro_core::sender::ResolvedSender;
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;

fn address(mailbox: &Mailbox) -> Address<'_> {
    Address::new_address(mailbox.name(), mailbox.address.as_str())
}

fn list(mailboxes: &[Mailbox]) -> Address<'_> {
    Address::new_list(mailboxes.iter().map(address).collect())
}

/// A new Message-ID's local part and domain: `<uuid@hostname>`.
pub fn message_id(id: &str, hostname: &str) -> String {
    format!("{id}@{hostname}")
}

/// Builds the message. Bcc recipients get no header: they only appear in the envelope.
pub fn build(message: &NewMessage, sender: &ResolvedSender, message_id: &str, date_unix: i64) -> Vec<u8> {
    let mut builder = MessageBuilder::new()
        .from(address(&sender.from))
        .message_id(MessageId::new(message_id))
        .date(Date::new(date_unix));
    if !message.subject.is_empty() {
        builder = builder.subject(Text::new(message.subject.as_str()));
    }
    if let Some(s) = &sender.sender {
        builder = builder.sender(address(s));
    }
    if let Some(r) = &sender.reply_to {
        builder = builder.reply_to(address(r));
    }
    if !message.to.is_empty() {
        builder = builder.to(list(&message.to));
    } else if message.cc.is_empty() {
        // Only Bcc recipients: an empty group keeps the To header valid without revealing them.
        builder = builder.header("To", Address::new_group(Some("undisclosed-recipients"), Vec::new()));
    }
    if !message.cc.is_empty() {
        builder = builder.cc(list(&message.cc));
    }
    for h in &message.headers {
        builder = builder.header(h.name.as_str(), HeaderType::Text(Text::new(h.value.as_str())));
    }
    if let Some(text) = &message.text {
        builder = builder.text_body(text.as_str());
    }
    if let Some(html) = &message.html {
        builder = builder.html_body(html.as_str());
    }
    for a in &message.attachments {
        builder = builder.attachment(a.content_type.as_str(), a.filename.as_str(), a.content.as_slice());
    }
    builder.write_to_vec().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use carteiro_core::message::{Limits, MessageIn};
    use carteiro_core::sender::ResolvedSender;
    use carteiro_core::{EmailAddress, Mailbox};

    use super::*;

    fn built(json: serde_json::Value) -> String {
        let input: MessageIn = serde_json::from_value(json).unwrap();
        let message = NewMessage::parse(&input, Limits::default()).unwrap();
        let from = Mailbox::parse("from", "João da Silva <joao@acme.example>").unwrap();
        let sender = ResolvedSender {
            from,
            sender: Some(Mailbox::parse("sender", "Plataforma <noreply@plataforma.example>").unwrap()),
            reply_to: None,
            envelope_from: EmailAddress::parse("envelope", "noreply@plataforma.example").unwrap(),
        };
        String::from_utf8(build(&message, &sender, &message_id("0190-abc", "carteiro.test"), 1_795_611_600)).unwrap()
    }

    fn head(raw: &str) -> &str {
        raw.split("\r\n\r\n").next().unwrap()
    }

    #[test]
    fn carries_the_resolved_sender_and_standard_headers() {
        let raw = built(serde_json::json!({"kind": "system", "to": ["a@example.com"], "subject": "Olá", "text": "oi"}));
        let head = head(&raw);
        assert!(head.contains("Message-ID: <0190-abc@carteiro.test>"), "{head}");
        assert!(head.contains("Date: Wed, 25 Nov 2026 13:00:00 +0000"), "{head}");
        assert!(head.contains("MIME-Version: 1.0"));
        assert!(head.contains("Sender: \"Plataforma\" <noreply@plataforma.example>"), "{head}");
        assert!(head.contains("From: =?utf-8?"), "a non-ASCII display name is encoded: {head}");
        assert!(head.contains("Subject: =?utf-8?"), "a non-ASCII subject is encoded: {head}");
        assert!(raw.lines().all(|l| l.len() <= 998));
    }

    #[test]
    fn bcc_stays_out_of_the_headers() {
        let raw = built(serde_json::json!({"kind": "system", "bcc": ["hidden@example.com"], "text": "oi"}));
        let head = head(&raw);
        assert!(!raw.contains("hidden@example.com"), "{raw}");
        assert!(head.contains("To: \"undisclosed-recipients\":;"), "{head}");
    }

    #[test]
    fn custom_headers_bodies_and_attachments() {
        let raw = built(serde_json::json!({
            "kind": "system", "to": ["a@example.com"], "cc": ["b@example.com"], "text": "plain", "html": "<p>html</p>",
            "headers": {"X-Workflow": "17"},
            "attachments": [{"filename": "relatório.pdf", "content_type": "application/pdf", "content_base64": "JVBERi0xLjQK"}]
        }));
        assert!(head(&raw).contains("X-Workflow: 17"));
        assert!(head(&raw).contains("Cc: <b@example.com>"));
        assert!(raw.contains("multipart/alternative"), "text and HTML travel as alternatives");
        assert!(raw.contains("Content-Type: application/pdf"));
        assert!(raw.contains("Content-Transfer-Encoding: base64"));
        assert!(raw.contains("JVBERi0xLjQK"));
    }
}
