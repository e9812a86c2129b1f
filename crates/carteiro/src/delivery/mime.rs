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
        .date(Date::new(date_unix))
        .subject(Text::new(message.subject.as_str()));
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
