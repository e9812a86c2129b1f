//! E-mail addresses and mailboxes, parsed once and never carried as bare strings.

use std::fmt;

use crate::error::{FieldError, check_header_text};

/// The longest address SMTP can carry in a path (RFC 5321 §4.5.3.1.3, less the brackets).
const MAX_ADDRESS_OCTETS: usize = 254;
const MAX_DISPLAY_NAME_CHARS: usize = 200;

/// A bare e-mail address (`ana@acme.example`): valid by RFC 5322's addr-spec as
/// the `email_address` crate checks it, plus what a safe SMTP path needs: no
/// spaces, no angle brackets, no control characters, at most 254 octets, no
/// domain literals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        let invalid =
            |why: &str| FieldError::new(field, format!("{field} is not a valid e-mail address ({why}), got {input:?}"));
        let value = input.trim();
        if value.is_empty() {
            return Err(FieldError::new(field, format!("{field} must not be empty")));
        }
        if value.len() > MAX_ADDRESS_OCTETS {
            return Err(invalid("longer than 254 octets"));
        }
        if value.chars().any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>') {
            return Err(invalid("spaces, angle brackets and control characters are not allowed"));
        }
        // SMTP without SMTPUTF8 carries ASCII only: an international domain
        // travels as its punycode (`açaí.com.br` → `xn--aa-4iaz.com.br`);
        // an international local part cannot travel at all.
        let (local, domain) = value.rsplit_once('@').ok_or_else(|| invalid("it has no @"))?;
        if !local.is_ascii() {
            return Err(invalid("the part before @ must be ASCII letters, digits and symbols"));
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| invalid("the domain is not a valid domain name"))?;
        let ascii = format!("{local}@{domain}");
        if ascii.len() > MAX_ADDRESS_OCTETS {
            return Err(invalid("longer than 254 octets"));
        }
        let options =
            email_address::Options { allow_display_text: false, allow_domain_literal: false, ..Default::default() };
        email_address::EmailAddress::parse_with_options(&ascii, options)
            .map_err(|e| invalid(e.to_string().trim_end_matches('.').to_lowercase().as_str()))?;
        Ok(Self(ascii))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// `a***@acme.example`: enough for an operator to recognise a recipient in a log line.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".to_owned(),
        }
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name: one line of text, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// An empty or blank name is no name.
    pub fn parse(field: &str, input: &str) -> Result<Option<Self>, FieldError> {
        let value = input.trim();
        if value.is_empty() {
            return Ok(None);
        }
        check_header_text(field, value)?;
        if value.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(FieldError::new(field, format!("{field} must be at most {MAX_DISPLAY_NAME_CHARS} characters")));
        }
        Ok(Some(Self(value.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name and an address: `Ana Souza <ana@acme.example>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<DisplayName>,
    pub address: EmailAddress,
}

impl Mailbox {
    pub fn new(name: Option<DisplayName>, address: EmailAddress) -> Self {
        Self { name, address }
    }

    /// Parses `ana@acme.example`, `Ana Souza <ana@acme.example>` or
    /// `"Souza, Ana" <ana@acme.example>`.
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        check_header_text(field, input)?;
        let value = input.trim();
        let Some(open) = value.rfind('<') else {
            return Ok(Self::new(None, EmailAddress::parse(field, value)?));
        };
        let Some(address) = value[open + 1..].strip_suffix('>') else {
            return Err(FieldError::new(
                field,
                format!("{field} must be an address or 'Name <address>', got {input:?}"),
            ));
        };
        let name = value[..open].trim();
        let name = name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .map(|n| n.replace("\\\"", "\"").replace("\\\\", "\\"))
            .unwrap_or_else(|| name.to_owned());
        Ok(Self::new(DisplayName::parse(field, &name)?, EmailAddress::parse(field, address)?))
    }

    /// Parses a name and an address given apart (`{"name": …, "address": …}`).
    pub fn from_parts(field: &str, name: Option<&str>, address: &str) -> Result<Self, FieldError> {
        let name = match name {
            Some(n) => DisplayName::parse(&format!("{field}.name"), n)?,
            None => None,
        };
        Ok(Self::new(name, EmailAddress::parse(&format!("{field}.address"), address)?))
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(DisplayName::as_str)
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            None => write!(f, "{}", self.address),
            Some(name) if name.chars().all(|c| c.is_alphanumeric() || " -_'!#$%&*+/=?^`{|}~".contains(c)) => {
                write!(f, "{name} <{}>", self.address)
            }
            Some(name) => write!(f, "\"{}\" <{}>", name.replace('\\', "\\\\").replace('"', "\\\""), self.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(EmailAddress::parse("to", " ana@acme.example ").unwrap().as_str(), "ana@acme.example");
        assert_eq!(EmailAddress::parse("to", "ana@acme.example").unwrap().domain(), "acme.example");
        for bad in [
            "",
            "ana",
            "ana@",
            "@acme",
            "a b@acme.example",
            "ana@acme.example>",
            "<ana@x.y>",
            "a@[127.0.0.1]",
            "ana@acme.example\r\nRCPT TO:<x@y>",
        ] {
            let e = EmailAddress::parse("to[0]", bad).unwrap_err();
            assert_eq!(e.field, "to[0]", "{bad:?}");
            assert!(e.message.starts_with("to[0]"), "{}", e.message);
        }
        let long = format!("{}@acme.example", "a".repeat(250));
        assert!(EmailAddress::parse("to", &long).unwrap_err().message.contains("254"));
    }

    #[test]
    fn parses_mailboxes() {
        let m = Mailbox::parse("from", "Ana Souza <ana@acme.example>").unwrap();
        assert_eq!(m.name(), Some("Ana Souza"));
        assert_eq!(m.address.as_str(), "ana@acme.example");
        let m = Mailbox::parse("from", r#""Souza, Ana \"A\"" <ana@acme.example>"#).unwrap();
        assert_eq!(m.name(), Some(r#"Souza, Ana "A""#));
        assert_eq!(m.to_string(), r#""Souza, Ana \"A\"" <ana@acme.example>"#);
        let m = Mailbox::parse("from", "ana@acme.example").unwrap();
        assert_eq!(m.name(), None);
        assert_eq!(Mailbox::parse("from", "João <j@acme.example>").unwrap().to_string(), "João <j@acme.example>");
        assert!(Mailbox::parse("from", "Ana <ana@acme.example").is_err());
        assert!(Mailbox::parse("from", "Ana\r\nBcc: x@y <ana@acme.example>").unwrap_err().message.contains("CR or LF"));
    }

    #[test]
    fn international_domains_travel_as_punycode() {
        let a = EmailAddress::parse("to", "joao@açaí.com.br").unwrap();
        assert_eq!(a.as_str(), "joao@xn--aa-4iaz.com.br");
        assert_eq!(EmailAddress::parse("to", "joao@ACME.Example").unwrap().as_str(), "joao@acme.example");
        let e = EmailAddress::parse("to", "joão@acme.example").unwrap_err();
        assert!(e.message.contains("ASCII"), "{}", e.message);
    }

    #[test]
    fn masks_for_logs() {
        assert_eq!(EmailAddress::parse("to", "ana@acme.example").unwrap().masked(), "a***@acme.example");
    }

    proptest! {
        #[test]
        fn parsed_addresses_are_safe_in_an_smtp_path(s in "\\PC{0,80}") {
            if let Ok(a) = EmailAddress::parse("to", &s) {
                prop_assert!(a.as_str().len() <= 254);
                prop_assert!(!a.as_str().contains(['\r', '\n', '<', '>', ' ']));
                prop_assert!(a.as_str().contains('@'));
            }
        }

        #[test]
        fn mailbox_display_parses_back(name in "[^\\p{Cc}\"\\\\<>]{1,40}", local in "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,2}", domain in "[a-z]{1,10}\\.example") {
            let input = format!("{local}@{domain}");
            let address = EmailAddress::parse("to", &input).unwrap();
            let m = Mailbox::new(DisplayName::parse("n", &name).unwrap(), address);
            let back = Mailbox::parse("to", &m.to_string()).unwrap();
            prop_assert_eq!(back, m);
        }

        #[test]
        fn mailbox_parser_never_panics(s in "\\PC{0,120}") {
            let _ = Mailbox::parse("from", &s);
        }
    }
}
