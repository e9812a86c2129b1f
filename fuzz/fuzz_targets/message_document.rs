//! Message documents (the JSON of `POST /messages`): parsing never panics, and an
//! accepted message holds no line break where a header will carry it.
#![no_main]

use carteiro_core::message::{Limits, MessageIn, NewMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(document) = serde_json::from_slice::<MessageIn>(input) else { return };
    let Ok(message) = NewMessage::parse(&document, Limits::default()) else { return };
    assert!(!message.subject.contains(['\r', '\n']), "{:?}", message.subject);
    for mailbox in message.to.iter().chain(&message.cc).chain(&message.bcc) {
        assert!(!mailbox.to_string().contains(['\r', '\n']), "{mailbox}");
    }
    assert!(message.to.len() + message.cc.len() + message.bcc.len() <= Limits::default().max_recipients);
});
