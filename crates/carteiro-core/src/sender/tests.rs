//! SPEC §3, one row per rule: From, Sender, Reply-To and the envelope sender
//! of `system` and `user` messages under every policy.

use super::*;
use crate::id::UserRef;
use crate::message::Actor;
use crate::settings::{PolicyPatch, Source};
use proptest::prelude::*;

const NOREPLY: &str = "ACME Avisos <noreply@acme.example>";
const COMPANY: &str = "ACME Ltda <contato@acme.example>";
const ANA: &str = "Ana Souza <ana@acme.example>";

/// The policy fields the sender rules read.
#[derive(Debug, Clone, Copy)]
struct Pol {
    /// The default sender's name and address, if configured.
    default: Option<&'static str>,
    /// `default_sender_enabled`.
    enabled: bool,
    force: bool,
    as_others: SendAsOthers,
}

const NO_DEFAULT: Pol = Pol { default: None, enabled: false, force: false, as_others: SendAsOthers::Allowed };
const DEFAULT_ON: Pol = Pol { default: Some(NOREPLY), enabled: true, ..NO_DEFAULT };
const DEFAULT_OFF: Pol = Pol { enabled: false, ..DEFAULT_ON };
const ON_WITHOUT_ADDRESS: Pol = Pol { default: None, enabled: true, ..NO_DEFAULT };

impl Pol {
    fn policy(self) -> Policy {
        let default = self.default.map(mailbox);
        let patch = PolicyPatch {
            default_sender_enabled: Some(self.enabled),
            default_sender_name: default.as_ref().and_then(|m| m.name.clone()),
            default_sender_address: default.map(|m| m.address),
            force_default_sender: Some(self.force),
            send_as_others: Some(self.as_others),
            ..PolicyPatch::default()
        };
        Policy::resolve(&[(Source::Company, &patch)])
    }
}

#[derive(Debug, Clone, Copy)]
enum Who {
    System,
    /// A user message acted by this person (id 42).
    User(&'static str),
}

/// What one row expects: From, Sender, Reply-To, envelope (MAIL FROM).
type Sent = (&'static str, Option<&'static str>, Option<&'static str>, &'static str);

/// description, kind, custom from, reply_to, policy, company e-mail, login → what is sent, or the field of the error.
type Row = (
    &'static str,
    Who,
    Option<&'static str>,
    Option<&'static str>,
    Pol,
    Option<&'static str>,
    Option<&'static str>,
    Result<Sent, &'static str>,
);

fn mailbox(text: &str) -> Mailbox {
    Mailbox::parse("test", text).unwrap()
}

fn kind(who: Who) -> Kind {
    match who {
        Who::System => Kind::System,
        Who::User(person) => {
            let m = mailbox(person);
            Kind::User(Actor { id: UserRef::parse("actor.id", "42").unwrap(), name: m.name, address: m.address })
        }
    }
}

fn send(
    who: Who,
    from: Option<&str>,
    reply_to: Option<&str>,
    pol: Pol,
    company: Option<&str>,
    login: Option<&str>,
) -> Result<ResolvedSender, FieldError> {
    let (policy, company) = (pol.policy(), company.map(mailbox));
    let ctx = SenderContext { policy: &policy, company: company.as_ref(), login_username: login };
    resolve(&kind(who), from.map(mailbox).as_ref(), reply_to.map(mailbox).as_ref(), ctx)
}

fn shown(resolved: &ResolvedSender) -> (String, Option<String>, Option<String>, String) {
    let text = |m: &Option<Mailbox>| m.as_ref().map(ToString::to_string);
    (resolved.from.to_string(), text(&resolved.sender), text(&resolved.reply_to), resolved.envelope_from.to_string())
}

#[test]
fn the_sender_rules() {
    use SendAsOthers::{OnBehalf, Rewrite};
    use Who::{System, User};
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        // system messages
        ("a system message is from the default sender when it is enabled",
            System, None, None, DEFAULT_ON, Some(COMPANY), None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("a system message is from the company's e-mail when the default sender is off",
            System, None, None, DEFAULT_OFF, Some(COMPANY), None, Ok((COMPANY, None, None, "contato@acme.example"))),
        ("a system message is from the company's e-mail when the default sender has no address",
            System, None, None, ON_WITHOUT_ADDRESS, Some(COMPANY), None, Ok((COMPANY, None, None, "contato@acme.example"))),
        ("a system message with neither default sender nor company e-mail is refused",
            System, None, None, DEFAULT_OFF, None, None, Err("from")),
        ("a system message ignores a custom from",
            System, Some("Vendas <vendas@acme.example>"), None, DEFAULT_ON, None, None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("a system message keeps its explicit reply_to",
            System, None, Some("Suporte <suporte@acme.example>"), DEFAULT_ON, None, None, Ok((NOREPLY, None, Some("Suporte <suporte@acme.example>"), "noreply@acme.example"))),
        ("a system message's envelope is the login account when that is an e-mail address",
            System, None, None, DEFAULT_ON, None, Some("relay@acme.example"), Ok((NOREPLY, None, None, "relay@acme.example"))),
        ("a login that is not an e-mail address leaves the envelope at the default sender",
            System, None, None, DEFAULT_ON, None, Some("relayuser"), Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("a login that is not an e-mail address leaves the envelope at the company's e-mail when the default sender is off",
            System, None, None, DEFAULT_OFF, Some(COMPANY), Some("relayuser"), Ok((COMPANY, None, None, "contato@acme.example"))),

        // user messages, send_as_others = allowed
        ("a user message is from the acting user, the envelope from the default sender",
            User(ANA), None, None, DEFAULT_ON, Some(COMPANY), None, Ok((ANA, None, None, "noreply@acme.example"))),
        ("a user message is from its custom sender when one is given",
            User(ANA), Some("Vendas <vendas@acme.example>"), None, DEFAULT_ON, None, None, Ok(("Vendas <vendas@acme.example>", None, None, "noreply@acme.example"))),
        ("a user message keeps its explicit reply_to",
            User(ANA), None, Some("Time <time@acme.example>"), DEFAULT_ON, None, None, Ok((ANA, None, Some("Time <time@acme.example>"), "noreply@acme.example"))),
        ("a user message's envelope is the login account when that is an e-mail address",
            User(ANA), None, None, DEFAULT_ON, None, Some("relay@acme.example"), Ok((ANA, None, None, "relay@acme.example"))),
        ("a user message needs no default sender when the login is an e-mail address",
            User(ANA), None, None, NO_DEFAULT, None, Some("relay@acme.example"), Ok((ANA, None, None, "relay@acme.example"))),
        ("a user message's envelope falls back to the company's e-mail, never the user's",
            User(ANA), None, None, DEFAULT_OFF, Some(COMPANY), Some("ana"), Ok((ANA, None, None, "contato@acme.example"))),
        ("a user message with no account, default sender or company e-mail for the envelope is refused",
            User(ANA), None, None, NO_DEFAULT, None, None, Err("from")),

        // force_default_sender
        ("force_default_sender puts the default sender in From",
            User(ANA), None, None, Pol { force: true, ..DEFAULT_ON }, None, None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("force_default_sender wins over a custom sender",
            User(ANA), Some("Vendas <vendas@acme.example>"), None, Pol { force: true, ..DEFAULT_ON }, None, None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("force_default_sender wins over send_as_others",
            User(ANA), None, None, Pol { force: true, as_others: OnBehalf, ..DEFAULT_ON }, None, None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("force_default_sender keeps an explicit reply_to",
            User(ANA), None, Some(ANA), Pol { force: true, ..DEFAULT_ON }, None, None, Ok((NOREPLY, None, Some(ANA), "noreply@acme.example"))),
        ("force_default_sender with the default sender off uses the company's e-mail",
            User(ANA), None, None, Pol { force: true, ..DEFAULT_OFF }, Some(COMPANY), None, Ok((COMPANY, None, None, "contato@acme.example"))),
        ("force_default_sender with no default sender and no company e-mail is refused",
            User(ANA), None, None, Pol { force: true, ..NO_DEFAULT }, None, Some("relay@acme.example"), Err("from")),

        // send_as_others = on_behalf
        ("on_behalf keeps the user in From and puts the default sender in Sender",
            User(ANA), None, None, Pol { as_others: OnBehalf, ..DEFAULT_ON }, None, None, Ok((ANA, Some(NOREPLY), None, "noreply@acme.example"))),
        ("on_behalf keeps a custom sender in From",
            User(ANA), Some("Vendas <vendas@acme.example>"), None, Pol { as_others: OnBehalf, ..DEFAULT_ON }, None, None, Ok(("Vendas <vendas@acme.example>", Some(NOREPLY), None, "noreply@acme.example"))),
        ("on_behalf adds no Sender when From already is the default sender",
            User(ANA), Some(NOREPLY), None, Pol { as_others: OnBehalf, ..DEFAULT_ON }, None, None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("on_behalf with the default sender off names the company's e-mail in Sender",
            User(ANA), None, None, Pol { as_others: OnBehalf, ..DEFAULT_OFF }, Some(COMPANY), None, Ok((ANA, Some(COMPANY), None, "contato@acme.example"))),
        ("on_behalf without any default sender is refused",
            User(ANA), None, None, Pol { as_others: OnBehalf, ..NO_DEFAULT }, None, Some("relay@acme.example"), Err("from")),

        // send_as_others = rewrite
        ("rewrite sends from the default sender's address under the user's name, replying to the user",
            User(ANA), None, None, Pol { as_others: Rewrite, ..DEFAULT_ON }, None, None, Ok(("Ana Souza <noreply@acme.example>", None, Some(ANA), "noreply@acme.example"))),
        ("rewrite lets an explicit reply_to win",
            User(ANA), None, Some("Time <time@acme.example>"), Pol { as_others: Rewrite, ..DEFAULT_ON }, None, None, Ok(("Ana Souza <noreply@acme.example>", None, Some("Time <time@acme.example>"), "noreply@acme.example"))),
        ("rewrite of a custom sender uses its name and replies to it",
            User(ANA), Some("Vendas <vendas@acme.example>"), None, Pol { as_others: Rewrite, ..DEFAULT_ON }, None, None, Ok(("Vendas <noreply@acme.example>", None, Some("Vendas <vendas@acme.example>"), "noreply@acme.example"))),
        ("rewrite of a nameless custom sender takes the acting user's name",
            User(ANA), Some("vendas@acme.example"), None, Pol { as_others: Rewrite, ..DEFAULT_ON }, None, None, Ok(("Ana Souza <noreply@acme.example>", None, Some("vendas@acme.example"), "noreply@acme.example"))),
        ("rewrite of a nameless user sends from the bare default sender address",
            User("ana@acme.example"), None, None, Pol { as_others: Rewrite, ..DEFAULT_ON }, None, None, Ok(("noreply@acme.example", None, Some("ana@acme.example"), "noreply@acme.example"))),
        ("rewrite with the default sender off uses the company's address",
            User(ANA), None, None, Pol { as_others: Rewrite, ..DEFAULT_OFF }, Some(COMPANY), None, Ok(("Ana Souza <contato@acme.example>", None, Some(ANA), "contato@acme.example"))),
        ("rewrite leaves From alone when it already is the default sender",
            User(ANA), Some(NOREPLY), None, Pol { as_others: Rewrite, ..DEFAULT_ON }, None, None, Ok((NOREPLY, None, None, "noreply@acme.example"))),
        ("rewrite without any default sender is refused",
            User(ANA), None, None, Pol { as_others: Rewrite, ..NO_DEFAULT }, None, Some("relay@acme.example"), Err("from")),
    ];
    for (says, who, from, reply_to, pol, company, login, expected) in rows {
        match (send(who, from, reply_to, pol, company, login), expected) {
            (Ok(resolved), Ok((from, sender, reply_to, envelope))) => {
                let want =
                    (from.to_owned(), sender.map(str::to_owned), reply_to.map(str::to_owned), envelope.to_owned());
                assert_eq!(shown(&resolved), want, "{says}");
            }
            (Err(e), Err(field)) => {
                assert_eq!(e.field, field, "{says}");
                assert!(e.message.contains("default sender"), "{says}: a clear error, got {:?}", e.message);
            }
            (got, _) => panic!("{says}: got {got:?}"),
        }
    }
}

#[test]
fn the_refusal_tells_the_operator_what_to_configure() {
    let e = send(Who::System, None, None, NO_DEFAULT, None, None).unwrap_err();
    assert_eq!(e.field, "from");
    for hint in
        ["system messages", "policy.default_sender_enabled", "policy.default_sender_address", "company's e-mail"]
    {
        assert!(e.message.contains(hint), "{hint:?} missing from {:?}", e.message);
    }
}

fn any_pol() -> impl Strategy<Value = Pol> {
    let default = proptest::option::of(Just(NOREPLY));
    let as_others = prop_oneof![Just(SendAsOthers::Allowed), Just(SendAsOthers::OnBehalf), Just(SendAsOthers::Rewrite)];
    (default, any::<bool>(), any::<bool>(), as_others).prop_map(|(default, enabled, force, as_others)| Pol {
        default,
        enabled,
        force,
        as_others,
    })
}

proptest! {
    #[test]
    fn the_envelope_is_never_an_arbitrary_user_address(
        pol in any_pol(),
        system in any::<bool>(),
        from in proptest::option::of(Just("Vendas <vendas@acme.example>")),
        company in proptest::option::of(Just(COMPANY)),
        login in proptest::option::of(prop_oneof![Just("relay@acme.example"), Just("relayuser")]),
    ) {
        let who = if system { Who::System } else { Who::User(ANA) };
        let from = if system { None } else { from };
        if let Ok(resolved) = send(who, from, None, pol, company, login) {
            let envelope = resolved.envelope_from.as_str();
            prop_assert!(
                ["relay@acme.example", "noreply@acme.example", "contato@acme.example"].contains(&envelope),
                "envelope {envelope}"
            );
            if login == Some("relay@acme.example") {
                prop_assert_eq!(envelope, "relay@acme.example", "the authenticated account comes first");
            }
        }
    }
}
