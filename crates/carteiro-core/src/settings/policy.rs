//! The policy block: who the mail is from and how it is sent. Inherited
//! field by field: a field a level leaves unset comes from the level above.

use crate::address::{DisplayName, EmailAddress, Mailbox};
use crate::error::{FieldError, FieldErrors};

use super::doc::PolicyDoc;

pub const DEFAULT_BUNDLE_INTERVAL_MS: u32 = 2000;

/// What happens to a `user` message's From when the upstream server may
/// refuse to send on behalf of other people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendAsOthers {
    /// From is the user (or the custom sender) as given.
    #[default]
    Allowed,
    /// From is the user; `Sender:` is the default sender.
    OnBehalf,
    /// From is the default sender's address under the user's name; `Reply-To` is the user.
    Rewrite,
}

impl SendAsOthers {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "allowed" => Ok(Self::Allowed),
            "on_behalf" => Ok(Self::OnBehalf),
            "rewrite" => Ok(Self::Rewrite),
            _ => Err(FieldError::new(
                field,
                format!("{field} must be one of allowed, on_behalf, rewrite, got {input:?}"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::OnBehalf => "on_behalf",
            Self::Rewrite => "rewrite",
        }
    }
}

/// How often a lane with bundling on is flushed: 100 ms to 10 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleInterval(u32);

impl BundleInterval {
    pub fn parse(field: &str, input: i64) -> Result<Self, FieldError> {
        if (100..=600_000).contains(&input) {
            Ok(Self(input as u32))
        } else {
            Err(FieldError::new(field, format!("{field} must be between 100 and 600000, got {input}")))
        }
    }

    pub fn millis(self) -> u32 {
        self.0
    }
}

impl Default for BundleInterval {
    fn default() -> Self {
        Self(DEFAULT_BUNDLE_INTERVAL_MS)
    }
}

/// The policy fields one level sets; `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyPatch {
    pub default_sender_enabled: Option<bool>,
    pub default_sender_name: Option<DisplayName>,
    pub default_sender_address: Option<EmailAddress>,
    pub force_default_sender: Option<bool>,
    pub bundle_enabled: Option<bool>,
    pub bundle_interval: Option<BundleInterval>,
    pub send_as_others: Option<SendAsOthers>,
}

impl PolicyPatch {
    pub fn parse(doc: &PolicyDoc) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let default_sender_name = doc
            .default_sender_name
            .as_deref()
            .and_then(|n| errors.check(DisplayName::parse("policy.default_sender_name", n)))
            .flatten();
        let default_sender_address = doc
            .default_sender_address
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .and_then(|a| errors.check(EmailAddress::parse("policy.default_sender_address", a)));
        let bundle_interval =
            doc.bundle_interval_ms.and_then(|i| errors.check(BundleInterval::parse("policy.bundle_interval_ms", i)));
        let send_as_others =
            doc.send_as_others.as_deref().and_then(|s| errors.check(SendAsOthers::parse("policy.send_as_others", s)));
        errors.into_result(|| Self {
            default_sender_enabled: doc.default_sender_enabled,
            default_sender_name,
            default_sender_address,
            force_default_sender: doc.force_default_sender,
            bundle_enabled: doc.bundle_enabled,
            bundle_interval,
            send_as_others,
        })
    }

    pub fn to_doc(&self) -> PolicyDoc {
        PolicyDoc {
            default_sender_enabled: self.default_sender_enabled,
            default_sender_name: self.default_sender_name.as_ref().map(|n| n.as_str().to_owned()),
            default_sender_address: self.default_sender_address.as_ref().map(|a| a.as_str().to_owned()),
            force_default_sender: self.force_default_sender,
            bundle_enabled: self.bundle_enabled,
            bundle_interval_ms: self.bundle_interval.map(|i| i64::from(i.millis())),
            send_as_others: self.send_as_others.map(|s| s.as_str().to_owned()),
        }
    }
}

/// The level a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Default,
    Global,
    Company,
    User,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Global => "global",
            Self::Company => "company",
            Self::User => "user",
        }
    }
}

/// A resolved value and the level it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

/// The policy in force for one (company, user): every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default_sender_enabled: Sourced<bool>,
    pub default_sender_name: Sourced<Option<DisplayName>>,
    pub default_sender_address: Sourced<Option<EmailAddress>>,
    pub force_default_sender: Sourced<bool>,
    pub bundle_enabled: Sourced<bool>,
    pub bundle_interval: Sourced<BundleInterval>,
    pub send_as_others: Sourced<SendAsOthers>,
}

impl Policy {
    /// Resolves each field from the most specific level that sets it.
    /// `patches` runs from the least specific level to the most specific.
    pub fn resolve(patches: &[(Source, &PolicyPatch)]) -> Self {
        fn pick<T: Clone>(
            patches: &[(Source, &PolicyPatch)],
            get: impl Fn(&PolicyPatch) -> Option<T>,
            default: T,
        ) -> Sourced<T> {
            patches
                .iter()
                .rev()
                .find_map(|(source, patch)| get(patch).map(|value| Sourced { value, source: *source }))
                .unwrap_or(Sourced { value: default, source: Source::Default })
        }
        fn pick_opt<T: Clone>(
            patches: &[(Source, &PolicyPatch)],
            get: impl Fn(&PolicyPatch) -> Option<T>,
        ) -> Sourced<Option<T>> {
            pick(patches, |p| get(p).map(Some), None)
        }
        Self {
            default_sender_enabled: pick(patches, |p| p.default_sender_enabled, false),
            default_sender_name: pick_opt(patches, |p| p.default_sender_name.clone()),
            default_sender_address: pick_opt(patches, |p| p.default_sender_address.clone()),
            force_default_sender: pick(patches, |p| p.force_default_sender, false),
            bundle_enabled: pick(patches, |p| p.bundle_enabled, false),
            bundle_interval: pick(patches, |p| p.bundle_interval, BundleInterval::default()),
            send_as_others: pick(patches, |p| p.send_as_others, SendAsOthers::default()),
        }
    }

    /// The default sender, when it is switched on and has an address.
    pub fn default_sender(&self) -> Option<Mailbox> {
        match (self.default_sender_enabled.value, &self.default_sender_address.value) {
            (true, Some(address)) => Some(Mailbox::new(self.default_sender_name.value.clone(), address.clone())),
            _ => None,
        }
    }
}
