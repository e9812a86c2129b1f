//! Who a message is from (SPEC §3): the From, Sender and Reply-To headers and
//! the SMTP envelope sender, decided from the message's kind, the resolved
//! policy and the connection.

use crate::address::{EmailAddress, Mailbox};
use crate::error::FieldError;
use crate::message::Kind;
use crate::settings::{Policy, SendAsOthers};

/// What the sender rules need to know besides the message.
#[derive(Debug, Clone, Copy)]
pub struct SenderContext<'a> {
    pub policy: &'a Policy,
    /// The company's own address (with its name), used when no default sender is on.
    pub company: Option<&'a Mailbox>,
    /// The account the connection logs in with, if any.
    pub login_username: Option<&'a str>,
}

impl SenderContext<'_> {
    /// The default sender, or else the company's own address.
    fn fallback(&self) -> Option<Mailbox> {
        self.policy.default_sender().or_else(|| self.company.cloned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSender {
    pub from: Mailbox,
    pub sender: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    /// MAIL FROM: the authenticated account or the default sender, never a user's address.
    pub envelope_from: EmailAddress,
}

fn no_default_sender(why: &str) -> FieldError {
    FieldError::new(
        "from",
        format!(
            "{why}, but no default sender is configured: enable the default sender (policy.default_sender_enabled and policy.default_sender_address) or set the company's e-mail"
        ),
    )
}

/// Applies the sender rules. `custom_from` is the message's own `from` (user messages only).
pub fn resolve(
    kind: &Kind,
    custom_from: Option<&Mailbox>,
    reply_to: Option<&Mailbox>,
    ctx: SenderContext<'_>,
) -> Result<ResolvedSender, FieldError> {
    let fallback = ctx.fallback();
    let (from, sender, rule_reply_to) = match kind {
        Kind::System => {
            let from = fallback
                .clone()
                .ok_or_else(|| no_default_sender("system messages are sent from the default sender"))?;
            (from, None, None)
        }
        Kind::User(actor) => {
            let user = custom_from.cloned().unwrap_or_else(|| actor.mailbox());
            if ctx.policy.force_default_sender.value {
                let from =
                    fallback.clone().ok_or_else(|| no_default_sender("all notifications use the default sender"))?;
                (from, None, None)
            } else {
                match ctx.policy.send_as_others.value {
                    SendAsOthers::Allowed => (user, None, None),
                    SendAsOthers::OnBehalf => {
                        let default =
                            fallback.clone().ok_or_else(|| no_default_sender("send_as_others is on_behalf"))?;
                        let sender = (default.address != user.address).then_some(default);
                        (user, sender, None)
                    }
                    SendAsOthers::Rewrite => {
                        let default = fallback.clone().ok_or_else(|| no_default_sender("send_as_others is rewrite"))?;
                        if default.address == user.address {
                            (user, None, None)
                        } else {
                            let name = user.name.clone().or_else(|| actor.name.clone());
                            (Mailbox::new(name, default.address), None, Some(user))
                        }
                    }
                }
            }
        }
    };
    let envelope_from = envelope_from(ctx).ok_or_else(|| {
        no_default_sender("the envelope sender (MAIL FROM) must be the account or the default sender")
    })?;
    Ok(ResolvedSender { from, sender, reply_to: reply_to.cloned().or(rule_reply_to), envelope_from })
}

/// MAIL FROM: the account the connection logs in with when it is an e-mail
/// address, else the default sender (or the company's address).
pub fn envelope_from(ctx: SenderContext<'_>) -> Option<EmailAddress> {
    ctx.login_username
        .and_then(|u| EmailAddress::parse("username", u).ok())
        .or_else(|| ctx.fallback().map(|f| f.address))
}

#[cfg(test)]
mod tests;
