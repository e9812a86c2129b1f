//! Addresses, display names and mailboxes from any text: parsing never panics,
//! and what it accepts is one safe header line that parses back to itself.
#![no_main]

use carteiro_core::address::{DisplayName, EmailAddress, Mailbox};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(address) = EmailAddress::parse("to", input) {
        let text = address.as_str();
        assert!(text.len() <= 254 && !text.contains(['\r', '\n', '<', '>', ' ']), "{text:?}");
        assert_eq!(EmailAddress::parse("to", text).as_ref(), Ok(&address));
    }
    if let Ok(Some(name)) = DisplayName::parse("name", input) {
        assert!(!name.as_str().contains(['\r', '\n']), "{:?}", name.as_str());
    }
    if let Ok(mailbox) = Mailbox::parse("from", input) {
        let again = Mailbox::parse("from", &mailbox.to_string()).expect("a mailbox written out parses again");
        assert_eq!(again, mailbox);
    }
});
