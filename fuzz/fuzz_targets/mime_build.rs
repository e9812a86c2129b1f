//! MIME building: any accepted message document becomes a message that a
//! receiver's parser (mail-parser) reads back with the same subject and
//! exactly one of each header carteiro writes, in CRLF lines of at most 998
//! octets: nothing a sender types can add a header or break the framing.
#![no_main]

use carteiro::delivery::mime;
use carteiro_core::address::Mailbox;
use carteiro_core::message::{Limits, MessageIn, NewMessage};
use carteiro_core::sender::ResolvedSender;
use libfuzzer_sys::fuzz_target;
use mail_parser::MessageParser;

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fuzz_target!(|input: &[u8]| {
    let Ok(document) = serde_json::from_slice::<MessageIn>(input) else { return };
    let Ok(message) = NewMessage::parse(&document, Limits::default()) else { return };
    let from = Mailbox::parse("from", "Plataforma <noreply@plataforma.example>").unwrap();
    let sender = ResolvedSender {
        envelope_from: from.address.clone(),
        from: message.from.clone().unwrap_or(from),
        sender: None,
        reply_to: message.reply_to.clone(),
    };
    let raw = mime::build(&message, &sender, "fuzz@carteiro.test", 1_790_000_000);

    for line in raw.split_inclusive(|b| *b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "a line without CRLF: {:?}", String::from_utf8_lossy(line));
        assert!(!line[..line.len() - 2].contains(&b'\r'), "a bare CR: {:?}", String::from_utf8_lossy(line));
        assert!(line.len() <= 1000, "a line of {} octets", line.len());
    }
    let parsed = MessageParser::default().parse(&raw).expect("the message parses");
    let headers = parsed.root_part().headers();
    for name in ["From", "Message-ID", "Date", "MIME-Version"] {
        assert_eq!(headers.iter().filter(|h| h.name().eq_ignore_ascii_case(name)).count(), 1, "{name}");
    }
    let subjects = headers.iter().filter(|h| h.name().eq_ignore_ascii_case("Subject")).count();
    assert_eq!(subjects, usize::from(!message.subject.is_empty()));
    if !message.subject.is_empty() {
        assert_eq!(words(parsed.subject().unwrap_or_default()), words(&message.subject));
    }
});
