//! The MIME message carteiro stores at submission and sends unchanged on
//! every attempt (so retries keep the same Message-ID and Date).

use base64::Engine;
use carteiro_core::Mailbox;
use carteiro_core::message::{Attachment, NewMessage};
use carteiro_core::sender::ResolvedSender;
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;

fn address(mailbox: &Mailbox) -> Address<'_> {
    Address::new_address(mailbox.name(), mailbox.address.as_str())
}

fn list(mailboxes: &[Mailbox]) -> Address<'_> {
    Address::new_list(mailboxes.iter().map(address).collect())
}

/// An unstructured header's value (Subject, a custom header). mail-builder
/// writes ASCII text as it is, so text that looks like an RFC 2047
/// encoded-word (`=?utf-8?q?n=C3=A3o?=`) would be decoded by the reader
/// into something else: such text is written as encoded-words itself.
fn unstructured(text: &str) -> HeaderType<'_> {
    if text.contains("=?") { HeaderType::Raw(Raw::new(encoded_words(text))) } else { HeaderType::Text(Text::new(text)) }
}

/// `text` as RFC 2047 encoded-words (UTF-8, base64), each whole characters
/// and at most 64 characters long, one space apart (where the header folds).
fn encoded_words(text: &str) -> String {
    // 39 octets make 52 base64 characters: `=?utf-8?B?` + 52 + `?=`.
    const CHUNK: usize = 39;
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + CHUNK).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        words.push(format!("=?utf-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(&text[start..end])));
        start = end;
    }
    words.join(" ")
}

/// An attachment: always base64 (mail-builder would send a text/* one as
/// 7bit or quoted-printable), in lines of 76 characters (RFC 2045 §6.8).
fn attachment(a: &Attachment) -> MimePart<'_> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(&a.content);
    let lines: Vec<&[u8]> = encoded.as_bytes().chunks(76).collect();
    MimePart::new(a.content_type.as_str(), lines.join(&b"\r\n"[..]))
        .attachment(a.filename.as_str())
        .transfer_encoding("base64")
}

/// The body: text and HTML as multipart/alternative (text first), within a
/// multipart/mixed with the attachments when there are any.
fn body(message: &NewMessage) -> MimePart<'_> {
    let text = message.text.as_deref().map(|t| MimePart::new("text/plain", t));
    let html = message.html.as_deref().map(|h| MimePart::new("text/html", h));
    let body = match (text, html) {
        (Some(text), Some(html)) => MimePart::new("multipart/alternative", vec![text, html]),
        (Some(part), None) | (None, Some(part)) => part,
        // Parsing refuses a message without either.
        (None, None) => MimePart::new("text/plain", ""),
    };
    if message.attachments.is_empty() {
        return body;
    }
    let mut parts = vec![body];
    parts.extend(message.attachments.iter().map(attachment));
    MimePart::new("multipart/mixed", parts)
}

/// Ends the message with CRLF, as every line of a message must (RFC 5322
/// §2.1). A multipart message already does; a single part ends where its
/// body does. A quoted-printable body ends with a soft line break, so that
/// its decoded text stays exactly the submitted one.
fn end_with_crlf(mut raw: Vec<u8>) -> Vec<u8> {
    if !raw.ends_with(b"\r\n") {
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        let quoted_printable = head.contains("\r\ncontent-transfer-encoding: quoted-printable\r\n")
            || head.ends_with("\r\ncontent-transfer-encoding: quoted-printable");
        if quoted_printable {
            // The soft break's '=' must fit in the line's 76 characters (RFC 2045 §6.7):
            // a full last line is broken earlier, never inside an =XX escape.
            let line_start = raw.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
            if raw.len() - line_start >= 76 {
                let mut at = line_start + 75;
                while raw[at - 1] == b'=' || raw[at - 2] == b'=' {
                    at -= 1;
                }
                raw.splice(at..at, *b"=\r\n");
            }
            raw.push(b'=');
        }
        raw.extend_from_slice(b"\r\n");
    }
    raw
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
        builder = builder.header("Subject", unstructured(&message.subject));
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
        builder = builder.header(h.name.as_str(), unstructured(&h.value));
    }
    end_with_crlf(builder.body(body(message)).write_to_vec().expect("writing to a Vec cannot fail"))
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

    /// The Subject's encoded-words, decoded and joined (white space between them is not text).
    fn decoded_subject(raw: &str) -> String {
        let head = head(raw).replace("\r\n ", " ");
        let value = head.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap();
        let bytes: Vec<u8> = value
            .split(' ')
            .flat_map(|word| {
                let b64 = word.strip_prefix("=?utf-8?B?").and_then(|w| w.strip_suffix("?=")).unwrap();
                base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
            })
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_that_looks_like_encoded_words_is_encoded_so_it_reads_back_the_same() {
        for subject in ["=?utf-8?q?n=C3=A3o?= aprovado", "a =?ISO-8859-1?Q?b?= c", &"=?x?= ç ".repeat(40)] {
            let subject = subject.trim();
            let raw = built(serde_json::json!({
                "kind": "system", "to": ["a@example.com"], "subject": subject, "text": "oi",
                "headers": {"X-Nota": "=?utf-8?b?w6k=?="}
            }));
            assert_eq!(decoded_subject(&raw), subject, "{raw}");
            assert!(head(&raw).contains("X-Nota: =?utf-8?B?PT91dGYtOD9iP3c2az0/PQ==?="), "{raw}");
            assert!(raw.split("\r\n").all(|l| l.len() <= 78), "{raw}");
        }
        // Other text is left to mail-builder: plain ASCII stays readable.
        let raw =
            built(serde_json::json!({"kind": "system", "to": ["a@example.com"], "subject": "a = b?", "text": "oi"}));
        assert!(head(&raw).contains("Subject: a = b?\r\n"), "{raw}");
    }

    #[test]
    fn attachments_are_base64_whatever_their_type_and_keep_their_bytes() {
        let csv: &[u8] = b"nome;cidade\nJo\xe3o;S\xe3o Paulo\n";
        let short: &[u8] = b"a b c\r\n";
        let long = vec![b'x'; 200];
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let raw = built(serde_json::json!({
            "kind": "system", "to": ["a@example.com"], "text": "oi",
            "attachments": [
                {"filename": "dados.csv", "content_type": "text/csv", "content_base64": b64(csv)},
                {"filename": "nota.txt", "content_type": "text/plain", "content_base64": b64(short)},
                {"filename": "vazio.txt", "content_type": "text/plain", "content_base64": ""},
                {"filename": "longo.bin", "content_type": "application/octet-stream", "content_base64": b64(&long)}
            ]
        }));
        let parts: Vec<&str> = raw.split("\r\n--").skip(2).collect();
        assert_eq!(parts.len(), 5, "four attachments and the closing boundary: {raw}");
        for (part, content) in parts.iter().zip([csv, short, b"", long.as_slice()]) {
            let (headers, body) = part.split_once("\r\n\r\n").unwrap();
            assert!(headers.contains("Content-Transfer-Encoding: base64"), "{part}");
            assert!(!headers.contains("charset"), "{part}");
            assert!(body.split("\r\n").all(|l| l.len() <= 76), "{part}");
            let compact: String = body.split("\r\n").collect();
            assert_eq!(base64::engine::general_purpose::STANDARD.decode(compact).unwrap(), content, "{part}");
        }
        assert!(raw.contains("Content-Type: text/csv\r\n"), "{raw}");
    }

    #[test]
    fn every_message_ends_with_crlf_and_quoted_printable_keeps_the_text_exact() {
        // Quoted-printable without a final line break ends with a soft one.
        let raw = built(serde_json::json!({"kind": "system", "to": ["a@example.com"], "html": "<p>Olá</p>"}));
        assert!(raw.ends_with("<p>Ol=C3=A1</p>=\r\n"), "{raw}");
        // A last line that is full breaks earlier, outside an escape, within 76 characters.
        for n in 70..80 {
            let text = format!("{}é", "a".repeat(n));
            let raw = built(serde_json::json!({"kind": "system", "to": ["a@example.com"], "text": text}));
            assert!(raw.ends_with("=\r\n"), "{raw}");
            let body = raw.split_once("\r\n\r\n").unwrap().1;
            assert!(body.split("\r\n").all(|l| l.len() <= 76), "{body}");
            let decoded = body.replace("=\r\n", "").replace("=C3=A9", "é");
            assert_eq!(decoded, text, "{body}");
        }
        // 7bit text, base64 and multipart messages end with CRLF too.
        for message in [
            serde_json::json!({"kind": "system", "to": ["a@example.com"], "text": "oi"}),
            serde_json::json!({"kind": "system", "to": ["a@example.com"], "text": "oi\n"}),
            serde_json::json!({"kind": "system", "to": ["a@example.com"], "text": "çãõ".repeat(30)}),
            serde_json::json!({"kind": "system", "to": ["a@example.com"], "text": "oi", "html": "<p>oi</p>"}),
        ] {
            let raw = built(message);
            assert!(raw.ends_with("\r\n") && !raw.ends_with("\r\n\r\n"), "{raw:?}");
        }
    }
}
