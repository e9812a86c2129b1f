//! A message received over SMTP, read into the API's message document, so
//! that it takes the same path as a message posted to `/api/v1/messages`.
//! The envelope decides who receives it: header recipients that are not in
//! it are left out, and envelope recipients the headers do not name are Bcc.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use carteiro_core::message::{ActorIn, AttachmentIn, IdIn, MailboxIn, MessageIn};
use mail_parser::{Address, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// The message document for `raw` sent to `recipients`; `default_sender` is
/// the address whose messages are `system` ones. `Err`: why it cannot be read.
pub fn document(raw: &[u8], recipients: &[String], default_sender: Option<&str>) -> Result<MessageIn, String> {
    let message = MessageParser::default().parse(raw).ok_or("the message cannot be read as an RFC 5322 message")?;
    let from = message
        .from()
        .and_then(Address::first)
        .and_then(|a| a.address.as_deref().map(|address| (a.name.as_deref(), address)))
        .ok_or("the message has no From address: it names the acting user")?;

    let in_envelope = |address: &str| recipients.iter().any(|r| r.eq_ignore_ascii_case(address));
    let listed = |list: Option<&Address>| -> Vec<MailboxIn> {
        list.map(|l| {
            l.iter()
                .filter_map(|a| {
                    let address = a.address.as_deref()?;
                    in_envelope(address).then(|| MailboxIn::Parts {
                        name: a.name.as_deref().map(str::to_owned),
                        address: address.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let to = listed(message.to());
    let cc = listed(message.cc());
    let named = |address: &str| {
        to.iter()
            .chain(&cc)
            .any(|m| matches!(m, MailboxIn::Parts { address: a, .. } if a.eq_ignore_ascii_case(address)))
    };
    let bcc = recipients.iter().filter(|r| !named(r)).map(|r| MailboxIn::Text(r.clone())).collect();

    let text = message.text_part(0).and_then(|p| match &p.body {
        PartType::Text(text) => Some(text.to_string()),
        _ => None,
    });
    let html = message.html_part(0).and_then(|p| match &p.body {
        PartType::Html(html) => Some(html.to_string()),
        _ => None,
    });
    let attachments = message
        .attachments()
        .enumerate()
        .map(|(i, part)| AttachmentIn {
            filename: part.attachment_name().map_or_else(|| format!("attachment-{}", i + 1), str::to_owned),
            content_type: part
                .content_type()
                .map(|t| format!("{}/{}", t.c_type, t.c_subtype.as_deref().unwrap_or("octet-stream"))),
            content_base64: STANDARD.encode(part.contents()),
        })
        .collect();

    let system = default_sender.is_some_and(|d| d.eq_ignore_ascii_case(from.1));
    let actor = (!system).then(|| ActorIn {
        // The platform's own user id is not in the message: the address names the person.
        id: IdIn::Text(from.1.to_ascii_lowercase()),
        name: from.0.map(str::to_owned),
        address: Some(from.1.to_owned()),
    });
    Ok(MessageIn {
        kind: Some(if system { "system" } else { "user" }.to_owned()),
        to,
        cc,
        bcc,
        subject: Some(message.subject().unwrap_or_default().to_owned()),
        text: text.or_else(|| html.is_none().then(String::new)),
        html,
        actor,
        reply_to: message.reply_to().and_then(Address::first).and_then(|a| {
            Some(MailboxIn::Parts {
                name: a.name.as_deref().map(str::to_owned),
                address: a.address.as_deref()?.to_owned(),
            })
        }),
        attachments,
        // The same Message-ID submitted twice is one message, as the same idempotency key is.
        idempotency_key: message.message_id().map(|id| format!("smtp:{}", hex::encode(Sha256::digest(id.as_bytes())))),
        ..MessageIn::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: =?utf-8?q?Jo=C3=A3o?= <joao@acme.example>\r\nTo: Ana <ana@example.com>, outra@example.com\r\nCc: c@example.com\r\nSubject: =?utf-8?q?Relat=C3=B3rio?=\r\nMessage-ID: <abc@acme.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOl\xc3\xa1\r\n--b\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";

    #[test]
    fn the_envelope_decides_who_receives_and_from_is_the_acting_user() {
        let recipients = ["ana@example.com".to_owned(), "hidden@example.com".to_owned()];
        let doc = document(RAW, &recipients, Some("noreply@acme.example")).unwrap();
        assert_eq!(doc.kind.as_deref(), Some("user"));
        let actor = doc.actor.unwrap();
        assert_eq!((actor.name.as_deref(), actor.address.as_deref()), (Some("João"), Some("joao@acme.example")));
        assert!(
            matches!(&doc.to[..], [MailboxIn::Parts { name: Some(n), address }] if n == "Ana" && address == "ana@example.com")
        );
        assert!(doc.cc.is_empty(), "a Cc outside the envelope does not receive it");
        assert!(matches!(&doc.bcc[..], [MailboxIn::Text(a)] if a == "hidden@example.com"));
        assert_eq!(doc.subject.as_deref(), Some("Relatório"));
        assert_eq!(doc.text.as_deref().map(str::trim), Some("Olá"));
        assert_eq!(doc.attachments[0].filename, "r.pdf");
        assert_eq!(doc.attachments[0].content_type.as_deref(), Some("application/pdf"));
        assert_eq!(doc.attachments[0].content_base64, "JVBERg==");
        assert!(doc.idempotency_key.unwrap().starts_with("smtp:"));
    }

    #[test]
    fn the_default_sender_makes_a_system_message_and_no_from_is_refused() {
        let doc = document(RAW, &["ana@example.com".to_owned()], Some("JOAO@acme.example")).unwrap();
        assert_eq!(doc.kind.as_deref(), Some("system"));
        assert!(doc.actor.is_none());
        assert!(document(b"Subject: x\r\n\r\nbody\r\n", &[], None).unwrap_err().contains("no From"));
    }
}
