//! SPEC §1, rule by rule: levels, the atomic connection block, the policy
//! inherited field by field, defaults, the stored password, validation,
//! `explain()` and the audit's `changed_fields`.

use super::*;
use crate::address::{DisplayName, EmailAddress};
use crate::error::FieldError;
use proptest::array::uniform3;
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

fn parse(doc: Value, stored: Option<&Level>) -> Result<Level, FieldErrors> {
    Level::parse(&serde_json::from_value::<SettingsDoc>(doc).expect("a settings document"), stored)
}

fn level(doc: Value) -> Level {
    parse(doc, None).expect("a valid level")
}

fn resolve(global: &Option<Level>, company: &Option<Level>, user: &Option<Level>) -> Effective {
    Effective::resolve(Levels { global: global.as_ref(), company: company.as_ref(), user: user.as_ref() })
}

/// A level with a complete server of its own: `smtp.{name}.example`, port
/// 587, STARTTLS, 60 s, logging in as `{name}-user` / `{name}-secret`.
fn server(name: &str, enabled: bool) -> Option<Level> {
    Some(level(json!({"connection": {
        "enabled": enabled, "host": format!("smtp.{name}.example"), "port": 587, "security": "starttls",
        "auth_enabled": true, "username": format!("{name}-user"), "password": format!("{name}-secret"), "timeout_s": 60,
    }})))
}

fn on(name: &str) -> Option<Level> {
    server(name, true)
}

fn off(name: &str) -> Option<Level> {
    server(name, false)
}

fn policy(doc: Value) -> Option<Level> {
    Some(level(json!({ "policy": doc })))
}

fn errors(doc: Value) -> Vec<FieldError> {
    parse(doc, None).expect_err("must be refused").0
}

// ------------------------------------------- levels and the enabled switch

#[test]
fn the_most_specific_enabled_level_provides_the_connection() {
    let rows = [
        ("only a global level: the global server", on("global"), None, None, Some(Source::Global)),
        (
            "an enabled company level replaces the global server",
            on("global"),
            on("company"),
            None,
            Some(Source::Company),
        ),
        (
            "a company level switched off leaves the global server in force",
            on("global"),
            off("company"),
            None,
            Some(Source::Global),
        ),
        (
            "an enabled user level wins over company and global",
            on("global"),
            on("company"),
            on("user"),
            Some(Source::User),
        ),
        (
            "a user level switched off falls back to the company",
            on("global"),
            on("company"),
            off("user"),
            Some(Source::Company),
        ),
        (
            "user and company switched off fall back to global",
            on("global"),
            off("company"),
            off("user"),
            Some(Source::Global),
        ),
        (
            "a user level with only policy inherits the company server",
            on("global"),
            on("company"),
            policy(json!({})),
            Some(Source::Company),
        ),
        ("a user level works without a company level", on("global"), None, on("user"), Some(Source::User)),
        ("a company level works without a global level", None, on("company"), None, Some(Source::Company)),
        ("a global level switched off means no connection", off("global"), None, None, None),
        ("every level switched off means no connection", off("global"), off("company"), off("user"), None),
        ("no levels at all means no connection", None, None, None, None),
    ];
    for (says, global, company, user, expected) in rows {
        let effective = resolve(&global, &company, &user);
        assert_eq!(effective.connection.as_ref().map(|c| c.source), expected, "{says}");
        let Some(source) = expected else {
            assert_eq!(effective.connection(), None, "{says}");
            continue;
        };
        let name = source.as_str();
        let conn = effective.connection().unwrap_or_else(|| panic!("{says}: a usable connection"));
        let login = conn.smtp().unwrap().login.as_ref().unwrap_or_else(|| panic!("{says}: a login"));
        assert_eq!(conn.smtp().unwrap().host.as_str(), format!("smtp.{name}.example"), "{says}");
        assert_eq!(login.username, format!("{name}-user"), "{says}: the login comes from the same level");
        assert_eq!(
            login.password().unwrap().expose(),
            format!("{name}-secret"),
            "{says}: the password comes from the same level"
        );
    }
}

#[test]
fn a_company_host_is_never_combined_with_the_global_password() {
    let global = on("global");
    // The company gives only a host: nothing else of the global block leaks in.
    let company = Some(level(json!({"connection": {"host": "smtp.company.example"}})));
    let conn = resolve(&global, &company, &None).connection().expect("the company server");
    assert_eq!(conn.smtp().unwrap().host.as_str(), "smtp.company.example");
    assert_eq!(conn.smtp().unwrap().login, None, "no global username or password");
    assert_eq!(conn.smtp().unwrap().port.get(), 25, "the default port, not the global 587");
    assert_eq!(conn.smtp().unwrap().security, Security::None, "the default security, not the global starttls");
    assert_eq!(conn.timeout.get(), 180, "the default timeout, not the global 60 s");

    // A company block that logs in must bring its own password.
    let e = errors(
        json!({"connection": {"host": "smtp.company.example", "auth_enabled": true, "username": "company-user"}}),
    );
    assert_eq!(e[0].field, "connection.password");
    assert!(e[0].message.contains("authentication is enabled"), "{}", e[0].message);
}

#[test]
fn a_switched_off_block_keeps_its_values_for_when_it_is_switched_on_again() {
    let stored = off("company").unwrap();
    assert_eq!(stored.connection.as_ref().unwrap().host.as_ref().unwrap().as_str(), "smtp.company.example");
    // Switched off, a block need not be complete.
    assert!(parse(json!({"connection": {"enabled": false}}), None).is_ok());
    // Switching it on with the password left blank keeps the stored one.
    let mut doc = serde_json::to_value(stored.to_doc()).unwrap();
    doc["connection"]["enabled"] = json!(true);
    let again = parse(doc, Some(&stored)).unwrap();
    let conn = resolve(&on("global"), &Some(again), &None).connection().unwrap();
    assert_eq!(conn.smtp().unwrap().host.as_str(), "smtp.company.example");
    assert_eq!(conn.smtp().unwrap().login.as_ref().unwrap().password().unwrap().expose(), "company-secret");
}

#[test]
fn a_block_is_on_unless_it_says_false() {
    assert!(level(json!({"connection": {"host": "smtp.acme.example"}})).connection.unwrap().enabled);
    assert!(!off("company").unwrap().connection.unwrap().enabled);
}

#[test]
fn system_messages_resolve_from_company_and_global_only() {
    // The user level exists, but a system message has no user: it is left out.
    let (global, company, user) = (on("global"), on("company"), on("user"));
    let company = company.map(|mut l| {
        l.policy = level(json!({"policy": {"force_default_sender": true}})).policy;
        l
    });
    let user = user.map(|mut l| {
        l.policy = level(json!({"policy": {"force_default_sender": false}})).policy;
        l
    });
    let for_system = resolve(&global, &company, &None);
    assert_eq!(for_system.connection.as_ref().unwrap().source, Source::Company);
    assert_eq!(for_system.policy.force_default_sender, Sourced { value: true, source: Source::Company });
    let for_user = resolve(&global, &company, &user);
    assert_eq!(for_user.connection.as_ref().unwrap().source, Source::User);
    assert_eq!(for_user.policy.force_default_sender, Sourced { value: false, source: Source::User });
}

#[test]
fn a_user_level_is_keyed_by_the_actor_id_inside_its_company() {
    let acme = CompanySlug::parse("slug", "acme").unwrap();
    let scopes = [
        (Scope::Global, "global", Source::Global),
        (Scope::Company(acme.clone()), "company:acme", Source::Company),
        (Scope::User(acme, UserRef::parse("actor.id", "42").unwrap()), "user:acme:42", Source::User),
    ];
    for (scope, key, source) in scopes {
        assert_eq!((scope.key().as_str(), scope.source()), (key, source));
    }
}

// ------------------------------------------------ policy, field by field

#[test]
fn each_policy_field_comes_from_the_most_specific_level_that_sets_it() {
    let rows = [
        (
            "an unset field takes its default",
            json!({}),
            json!({}),
            json!({}),
            "bundle_interval_ms",
            json!(2000),
            "default",
        ),
        (
            "a field set only globally comes from global",
            json!({"default_sender_name": "Plataforma"}),
            json!({}),
            json!({}),
            "default_sender_name",
            json!("Plataforma"),
            "global",
        ),
        (
            "the company overrides the global value",
            json!({"default_sender_address": "noreply@platform.example"}),
            json!({"default_sender_address": "noreply@acme.example"}),
            json!({}),
            "default_sender_address",
            json!("noreply@acme.example"),
            "company",
        ),
        (
            "a field the company leaves unset is inherited from global",
            json!({"default_sender_address": "noreply@platform.example"}),
            json!({"force_default_sender": true}),
            json!({}),
            "default_sender_address",
            json!("noreply@platform.example"),
            "global",
        ),
        (
            "the field the company does set comes from the company",
            json!({"default_sender_address": "noreply@platform.example"}),
            json!({"force_default_sender": true}),
            json!({}),
            "force_default_sender",
            json!(true),
            "company",
        ),
        (
            "an explicit false overrides an inherited true",
            json!({"bundle_enabled": true}),
            json!({"bundle_enabled": false}),
            json!({}),
            "bundle_enabled",
            json!(false),
            "company",
        ),
        (
            "the user overrides the company",
            json!({}),
            json!({"send_as_others": "on_behalf"}),
            json!({"send_as_others": "rewrite"}),
            "send_as_others",
            json!("rewrite"),
            "user",
        ),
        (
            "a field the user leaves unset comes from the company",
            json!({"default_sender_enabled": false}),
            json!({"default_sender_enabled": true}),
            json!({"bundle_enabled": true}),
            "default_sender_enabled",
            json!(true),
            "company",
        ),
        (
            "a blank address is unset, so it is inherited",
            json!({"default_sender_address": "noreply@platform.example"}),
            json!({"default_sender_address": "  "}),
            json!({}),
            "default_sender_address",
            json!("noreply@platform.example"),
            "global",
        ),
        (
            "a blank name is unset, so it is inherited",
            json!({"default_sender_name": "Plataforma"}),
            json!({"default_sender_name": ""}),
            json!({}),
            "default_sender_name",
            json!("Plataforma"),
            "global",
        ),
        (
            "choices are read case-insensitively",
            json!({"send_as_others": "On_Behalf"}),
            json!({}),
            json!({}),
            "send_as_others",
            json!("on_behalf"),
            "global",
        ),
    ];
    for (says, global, company, user, field, value, source) in rows {
        let explained = resolve(&policy(global), &policy(company), &policy(user)).explain();
        assert_eq!(explained["policy"][field], json!({"value": value, "source": source}), "{says}");
    }
}

#[test]
fn the_policy_does_not_depend_on_the_connection_switch() {
    // The switch replaces the connection block; the policy block is inherited on its own.
    let mut company = off("company").unwrap();
    company.policy = level(json!({"policy": {"bundle_enabled": true}})).policy;
    let effective = resolve(&on("global"), &Some(company), &None);
    assert_eq!(effective.connection.unwrap().source, Source::Global);
    assert_eq!(effective.policy.bundle_enabled, Sourced { value: true, source: Source::Company });
}

#[test]
fn the_default_sender_needs_both_the_switch_and_an_address() {
    let rows = [
        (
            "switched on with a name and an address",
            json!({"default_sender_enabled": true, "default_sender_name": "ACME", "default_sender_address": "noreply@acme.example"}),
            Some("ACME <noreply@acme.example>"),
        ),
        (
            "switched on with an address and no name",
            json!({"default_sender_enabled": true, "default_sender_address": "noreply@acme.example"}),
            Some("noreply@acme.example"),
        ),
        (
            "switched on without an address",
            json!({"default_sender_enabled": true, "default_sender_name": "ACME"}),
            None,
        ),
        (
            "an address with the switch off",
            json!({"default_sender_enabled": false, "default_sender_address": "noreply@acme.example"}),
            None,
        ),
        (
            "an address with the switch unset (off by default)",
            json!({"default_sender_address": "noreply@acme.example"}),
            None,
        ),
    ];
    for (says, doc, expected) in rows {
        let sender = resolve(&None, &policy(doc), &None).policy.default_sender();
        assert_eq!(sender.map(|m| m.to_string()).as_deref(), expected, "{says}");
    }
}

// ---------------------------------------------------------------- defaults

#[test]
fn unset_values_show_their_default_with_source_default() {
    let company = Some(level(json!({"connection": {"host": "smtp.acme.example"}})));
    let explained = resolve(&None, &company, &None).explain();
    let expected = [
        ("connection", "port", json!(25)),
        ("connection", "security", json!("none")),
        ("connection", "timeout_s", json!(180)),
        ("connection", "tls_verify", json!(true)),
        ("connection", "auth_mechanism", json!("auto")),
        ("policy", "default_sender_enabled", json!(false)),
        ("policy", "default_sender_name", json!(null)),
        ("policy", "default_sender_address", json!(null)),
        ("policy", "force_default_sender", json!(false)),
        ("policy", "bundle_enabled", json!(false)),
        ("policy", "bundle_interval_ms", json!(2000)),
        ("policy", "send_as_others", json!("allowed")),
    ];
    for (block, field, value) in expected {
        assert_eq!(explained[block][field], json!({"value": value, "source": "default"}), "{block}.{field}");
    }
    assert_eq!(explained["connection"]["host"], json!({"value": "smtp.acme.example", "source": "company"}));
    assert_eq!(explained["connection"]["source"], json!("company"));
}

#[test]
fn values_a_level_sets_show_that_level_even_when_equal_to_the_default() {
    let company = Some(level(json!({"connection": {"host": "smtp.acme.example", "port": 25, "timeout_s": 180}})));
    let explained = resolve(&None, &company, &None).explain();
    assert_eq!(explained["connection"]["port"], json!({"value": 25, "source": "company"}));
    assert_eq!(explained["connection"]["timeout_s"], json!({"value": 180, "source": "company"}));
}

// ------------------------------------------------- the stored password

#[test]
fn a_blank_password_keeps_the_stored_one() {
    let stored = on("company").unwrap();
    let with_password = |password: Value| {
        let mut doc =
            json!({"connection": {"host": "smtp.company.example", "auth_enabled": true, "username": "company-user"}});
        if !password.is_null() {
            doc["connection"]["password"] = password;
        }
        doc
    };
    let rows = [
        ("a blank password keeps the stored one", with_password(json!("")), Some(&stored), Some("company-secret")),
        ("an absent password keeps the stored one", with_password(Value::Null), Some(&stored), Some("company-secret")),
        ("a new password replaces the stored one", with_password(json!("n3w")), Some(&stored), Some("n3w")),
        ("a password is taken as typed, spaces included", with_password(json!(" n3w ")), Some(&stored), Some(" n3w ")),
        (
            "a block switched off keeps the stored password too",
            json!({"connection": {"enabled": false, "host": "SMTP.company.example", "username": "company-user", "password": ""}}),
            Some(&stored),
            Some("company-secret"),
        ),
        ("a disabled block with nothing stored has no password", json!({"connection": {"enabled": false}}), None, None),
    ];
    for (says, doc, stored, expected) in rows {
        let parsed = parse(doc, stored).unwrap_or_else(|e| panic!("{says}: {e}"));
        assert_eq!(parsed.password().map(Secret::expose), expected, "{says}");
    }
    for (says, other) in [
        ("another server", json!({"host": "smtp.evil.example"})),
        ("another user", json!({"username": "someone-else"})),
    ] {
        let mut doc = with_password(json!(""));
        for (key, value) in other.as_object().unwrap() {
            doc["connection"][key] = value.clone();
        }
        let e = parse(doc, Some(&stored)).expect_err(says);
        assert_eq!(e.0[0].field, "connection.password", "{says}");
        assert!(e.0[0].message.contains("the server or user name changed"), "{says}: {}", e.0[0].message);
    }
    let e = parse(with_password(json!("")), None).expect_err("blank with nothing stored");
    assert_eq!(e.0[0].field, "connection.password");
    assert!(e.0[0].message.contains("none is stored"), "{}", e.0[0].message);
}

// ------------------------------------------------------------- validation

#[test]
fn validation_errors_name_the_field_and_the_rule() {
    let conn = |field: &str, value: Value| json!({"connection": {"host": "smtp.acme.example", field: value}});
    let pol = |field: &str, value: Value| json!({"policy": {field: value}});
    let rows = [
        (
            "a timeout under 10 s",
            conn("timeout_s", json!(5)),
            "connection.timeout_s",
            "connection.timeout_s must be between 10 and 180, got 5",
        ),
        (
            "a timeout over 180 s",
            conn("timeout_s", json!(181)),
            "connection.timeout_s",
            "connection.timeout_s must be between 10 and 180, got 181",
        ),
        ("port 0", conn("port", json!(0)), "connection.port", "connection.port must be between 1 and 65535, got 0"),
        (
            "port 65536",
            conn("port", json!(65536)),
            "connection.port",
            "connection.port must be between 1 and 65535, got 65536",
        ),
        (
            "a negative port",
            conn("port", json!(-25)),
            "connection.port",
            "connection.port must be between 1 and 65535, got -25",
        ),
        (
            "an unknown security",
            conn("security", json!("ssl")),
            "connection.security",
            r#"connection.security must be one of none, starttls, tls, got "ssl""#,
        ),
        (
            "a host with a space",
            conn("host", json!("smtp acme")),
            "connection.host",
            "connection.host must be a host name or an IP address",
        ),
        (
            "an enabled block without host",
            json!({"connection": {"port": 587}}),
            "connection.host",
            "connection.host is required when specific e-mail sending is enabled",
        ),
        (
            "authentication without a user name",
            json!({"connection": {"host": "h.example", "auth_enabled": true, "password": "p"}}),
            "connection.username",
            "connection.username is required when authentication is enabled",
        ),
        (
            "a legacy transport",
            conn("transport", json!("mapi")),
            "connection.transport",
            r#"connection.transport "mapi" is no longer supported"#,
        ),
        (
            "an unknown transport",
            conn("transport", json!("fax")),
            "connection.transport",
            r#"connection.transport must be one of smtp, sendmail, pickup, capture, got "fax""#,
        ),
        (
            "a password with a line break",
            conn("password", json!("a\r\nQUIT")),
            "connection.password",
            "connection.password must not contain line breaks",
        ),
        (
            "a CA that is not PEM",
            conn("tls_ca_pem", json!("hello")),
            "connection.tls_ca_pem",
            "connection.tls_ca_pem must hold one or more PEM certificates",
        ),
        (
            "a proxy address without a port",
            conn("proxy", json!({"enabled": true, "address": "proxy.acme.example"})),
            "connection.proxy.port",
            "connection.proxy.port is required when the proxy has an address",
        ),
        (
            "an unknown proxy kind",
            conn("proxy", json!({"enabled": true, "kind": "socks4"})),
            "connection.proxy.kind",
            r#"connection.proxy.kind must be one of socks5, http, got "socks4""#,
        ),
        (
            "a proxy user without a password",
            conn("proxy", json!({"enabled": true, "address": "p.example", "port": 1080, "username": "u"})),
            "connection.proxy.password",
            "connection.proxy.password is required when the proxy has a user name",
        ),
        (
            "XOAUTH2 without a token",
            json!({"connection": {"host": "h.example", "auth_enabled": true, "username": "u", "auth_mechanism": "xoauth2"}}),
            "connection.oauth",
            "connection.oauth needs an access_token",
        ),
        (
            "a token endpoint over plain HTTP",
            json!({"connection": {"host": "h.example", "auth_enabled": true, "username": "u", "auth_mechanism": "xoauth2",
                                  "oauth": {"token_url": "http://127.0.0.1.evil.example/token", "client_id": "c", "refresh_token": "r"}}}),
            "connection.oauth.token_url",
            "connection.oauth.token_url must be an https:// URL",
        ),
        (
            "a pickup transport without a directory",
            json!({"connection": {"transport": "pickup"}}),
            "connection.pickup_dir",
            "connection.pickup_dir is required",
        ),
        (
            "a pickup directory that is not absolute",
            json!({"connection": {"transport": "pickup", "pickup_dir": "spool/pickup"}}),
            "connection.pickup_dir",
            "connection.pickup_dir must be an absolute path",
        ),
        (
            "a default sender address that is not an address",
            pol("default_sender_address", json!("noreply at acme")),
            "policy.default_sender_address",
            "policy.default_sender_address is not a valid e-mail address",
        ),
        (
            "a default sender name with a line break",
            pol("default_sender_name", json!("ACME\r\nBcc: x@y")),
            "policy.default_sender_name",
            "policy.default_sender_name must not contain CR or LF",
        ),
        (
            "an unknown send_as_others",
            pol("send_as_others", json!("maybe")),
            "policy.send_as_others",
            r#"policy.send_as_others must be one of allowed, on_behalf, rewrite, got "maybe""#,
        ),
        (
            "a bundle interval under 100 ms",
            pol("bundle_interval_ms", json!(50)),
            "policy.bundle_interval_ms",
            "policy.bundle_interval_ms must be between 100 and 600000, got 50",
        ),
    ];
    for (says, doc, field, rule) in rows {
        let e = errors(doc);
        assert_eq!(e.len(), 1, "{says}: {e:?}");
        assert_eq!(e[0].field, field, "{says}");
        assert!(e[0].message.starts_with(rule), "{says}: {:?} should start with {rule:?}", e[0].message);
    }
}

/// What must hold of the connection a row parses to.
type Holds = fn(&Connection) -> bool;

#[test]
fn the_limits_themselves_are_accepted() {
    let rows: [(&str, Value, Holds); 9] = [
        ("the shortest timeout", json!({"timeout_s": 10}), |c: &Connection| c.timeout.get() == 10),
        ("the longest timeout", json!({"timeout_s": 180}), |c: &Connection| c.timeout.get() == 180),
        ("port 1", json!({"port": 1}), |c: &Connection| c.smtp().unwrap().port.get() == 1),
        ("port 65535", json!({"port": 65535}), |c: &Connection| c.smtp().unwrap().port.get() == 65535),
        ("no security", json!({"security": "none"}), |c: &Connection| c.smtp().unwrap().security == Security::None),
        ("STARTTLS", json!({"security": "starttls"}), |c: &Connection| {
            c.smtp().unwrap().security == Security::StartTls
        }),
        ("implicit TLS, in capitals", json!({"security": "TLS"}), |c: &Connection| {
            c.smtp().unwrap().security == Security::Tls
        }),
        ("an IPv6 address in brackets", json!({"host": "[::1]"}), |c: &Connection| {
            c.smtp().unwrap().host.as_str() == "::1"
        }),
        ("a host name in capitals", json!({"host": "SMTP.Acme.Example"}), |c: &Connection| {
            c.smtp().unwrap().host.as_str() == "smtp.acme.example"
        }),
    ];
    for (says, fields, holds) in rows {
        let mut doc = json!({"host": "smtp.acme.example"});
        doc.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        let parsed = parse(json!({ "connection": doc }), None).unwrap_or_else(|e| panic!("{says}: {e}"));
        assert!(holds(&parsed.connection.unwrap().connection().unwrap()), "{says}");
    }
}

#[test]
fn every_invalid_field_is_reported_at_once() {
    let e = errors(json!({
        "connection": {"host": "smtp.acme.example", "port": 0, "timeout_s": 5, "security": "ssl"},
        "policy": {"default_sender_address": "nobody"},
    }));
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["connection.port", "connection.security", "connection.timeout_s", "policy.default_sender_address"]
    );
}

// --------------------------------------------------------------- explain

#[test]
fn explain_gives_every_value_with_its_source() {
    let global = Some(level(json!({
        "connection": {"host": "smtp.platform.example", "auth_enabled": true, "username": "platform", "password": "global-secret"},
        "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@platform.example"},
    })));
    let company = Some(level(json!({
        "connection": {"host": "smtp.acme.example", "port": 465, "security": "tls", "auth_enabled": true,
                       "username": "acme", "password": "company-secret", "timeout_s": 30, "tls_verify": false},
        "policy": {"default_sender_name": "ACME", "bundle_enabled": true},
    })));
    let user = policy(json!({"send_as_others": "rewrite"}));
    let explained = resolve(&global, &company, &user).explain();
    let expected = json!({
        "connection": {
            "source": "company",
            "transport": {"value": "smtp", "source": "company"},
            "host": {"value": "smtp.acme.example", "source": "company"},
            "port": {"value": 465, "source": "company"},
            "security": {"value": "tls", "source": "company"},
            "auth_enabled": {"value": true, "source": "company"},
            "auth_mechanism": {"value": "auto", "source": "default"},
            "username": {"value": "acme", "source": "company"},
            "password": {"value": null, "set": true, "source": "company"},
            "timeout_s": {"value": 30, "source": "company"},
            "tls_verify": {"value": false, "source": "company"},
            "max_sessions": {"value": 4, "source": "default"},
            "rate_per_minute": {"value": null, "source": "company"},
            "tls_ca_pem": {"value": null, "source": "company"},
            "proxy": {"value": null, "source": "company"},
            "oauth": {"value": null, "source": "company"},
        },
        "policy": {
            "default_sender_enabled": {"value": true, "source": "global"},
            "default_sender_name": {"value": "ACME", "source": "company"},
            "default_sender_address": {"value": "noreply@platform.example", "source": "global"},
            "force_default_sender": {"value": false, "source": "default"},
            "bundle_enabled": {"value": true, "source": "company"},
            "bundle_interval_ms": {"value": 2000, "source": "default"},
            "send_as_others": {"value": "rewrite", "source": "user"},
        },
    });
    assert_eq!(explained, expected);
}

#[test]
fn explain_names_every_field_of_the_document() {
    let company = Some(level(json!({"connection": {
        "host": "smtp.acme.example", "proxy": {"kind": "socks5", "address": "proxy.acme.example", "port": 1080},
    }})));
    let explained = resolve(&None, &company, &None).explain();
    let every_field = serde_json::to_value(SettingsDoc {
        connection: Some(ConnectionDoc::default()),
        policy: Some(PolicyDoc::default()),
    })
    .unwrap();
    // `enabled` is implied (only the block in force is shown); `password_set` is the password entry's `set`;
    // the other transports' fields are shown only for them (below).
    let implied = ["enabled", "password_set", "sendmail_command", "pickup_dir"];
    for block in ["connection", "policy"] {
        let fields = every_field[block].as_object().unwrap().keys().filter(|k| !implied.contains(&k.as_str()));
        let missing: Vec<&String> = fields.filter(|k| explained[block].get(k.as_str()).is_none()).collect();
        assert!(missing.is_empty(), "explain() leaves out {block}.{missing:?}");
    }
    for (transport, field) in [("sendmail", "sendmail_command"), ("pickup", "pickup_dir")] {
        let company = Some(level(json!({"connection": {"transport": transport, "pickup_dir": "/var/spool/pickup"}})));
        let explained = resolve(&None, &company, &None).explain();
        assert!(explained["connection"].get(field).is_some(), "explain() leaves out {field} for {transport}");
        assert!(explained["connection"].get("host").is_none(), "explain() shows host for {transport}");
    }
}

#[test]
fn explain_without_any_enabled_connection_says_so() {
    let explained = resolve(&off("global"), &None, &None).explain();
    assert_eq!(explained["connection"], Value::Null);
    assert_eq!(explained["policy"]["send_as_others"]["source"], "default");
}

#[test]
fn secrets_never_appear_in_any_output() {
    let (global, company) = (on("global"), on("company"));
    let effective = resolve(&global, &company, &None);
    let outputs = [
        ("explain()", effective.explain().to_string()),
        ("Effective's Debug", format!("{effective:?}")),
        ("a level as read back", serde_json::to_string(&company.as_ref().unwrap().to_doc()).unwrap()),
        ("a level's Debug", format!("{company:?}")),
        ("changed_fields", format!("{:?}", company.as_ref().unwrap().changed_fields(global.as_ref()))),
        (
            "a refused password",
            format!("{:?}", errors(json!({"connection": {"host": "h.example", "password": "company-secret\n"}}))),
        ),
    ];
    for (what, text) in outputs {
        for secret in ["global-secret", "company-secret"] {
            assert!(!text.contains(secret), "{what} shows {secret}: {text}");
        }
    }
    let read_back = serde_json::to_value(company.unwrap().to_doc()).unwrap();
    assert_eq!(
        (&read_back["connection"]["password"], &read_back["connection"]["password_set"]),
        (&Value::Null, &json!(true))
    );
}

// ----------------------------------------------------------------- audit

#[test]
fn changed_fields_name_what_changed_and_never_a_secret_value() {
    let base = json!({"connection": {"host": "smtp.acme.example", "auth_enabled": true, "username": "u", "password": "old-secret"},
                      "policy": {"bundle_enabled": false}});
    let edit = |path: &[&str], value: Value| {
        let mut doc = base.clone();
        let (last, parents) = path.split_last().unwrap();
        parents.iter().fold(&mut doc, |d, k| &mut d[*k])[*last] = value;
        doc
    };
    let stored = level(base.clone());
    let rows = [
        (
            "saving the form unchanged, password left blank, changes nothing",
            edit(&["connection", "password"], json!("")),
            vec![],
        ),
        ("retyping the same password changes nothing", base.clone(), vec![]),
        (
            "a new password is recorded by name only",
            edit(&["connection", "password"], json!("new-secret")),
            vec!["connection.password"],
        ),
        ("a new timeout", edit(&["connection", "timeout_s"], json!(30)), vec!["connection.timeout_s"]),
        ("a new host", edit(&["connection", "host"], json!("smtp2.acme.example")), vec!["connection.host"]),
        ("the switch turned off", edit(&["connection", "enabled"], json!(false)), vec!["connection.enabled"]),
        ("a policy field", edit(&["policy", "bundle_enabled"], json!(true)), vec!["policy.bundle_enabled"]),
        ("a policy field unset", edit(&["policy", "bundle_enabled"], Value::Null), vec!["policy.bundle_enabled"]),
        (
            "the connection block removed, password included",
            json!({"policy": {"bundle_enabled": false}}),
            vec![
                "connection.auth_enabled",
                "connection.enabled",
                "connection.host",
                "connection.transport",
                "connection.username",
                "connection.password",
            ],
        ),
    ];
    for (says, doc, expected) in rows {
        let after = parse(doc, Some(&stored)).unwrap_or_else(|e| panic!("{says}: {e}"));
        assert_eq!(after.changed_fields(Some(&stored)), expected, "{says}");
    }
    let created = stored.changed_fields(None);
    assert!(created.contains(&"connection.password".to_owned()), "a first save says the password was set: {created:?}");
    assert!(!created.iter().any(|f| f.contains("password_set") || f.contains("secret")), "{created:?}");
}

// ------------------------------------------------------- the host itself

#[test]
fn host_reach_lists_what_runs_writes_or_calls_on_the_carteiro_host_and_nothing_else() {
    let reach = |connection: Value| -> Vec<(&'static str, String)> {
        let level = level(json!({ "connection": connection }));
        level.connection.unwrap().host_reach().into_iter().map(|r| (r.field, r.value)).collect()
    };
    let oauth = |token_url: &str| {
        json!({"host": "smtp.gmail.com", "auth_enabled": true, "auth_mechanism": "xoauth2", "username": "relay@acme.example",
               "oauth": {"token_url": token_url, "client_id": "c", "client_secret": "s", "refresh_token": "r"}})
    };

    assert_eq!(reach(json!({"host": "smtp.acme.example"})), []);
    assert_eq!(reach(json!({"transport": "capture"})), []);
    assert_eq!(reach(oauth("https://oauth2.googleapis.com/token")), []);
    assert_eq!(reach(json!({"transport": "sendmail"})), [("connection.transport", "sendmail".to_owned())]);
    assert_eq!(
        reach(json!({"transport": "sendmail", "sendmail_command": "/bin/sh -c id"})),
        [("connection.transport", "sendmail".to_owned()), ("connection.sendmail_command", "/bin/sh -c id".to_owned())]
    );
    assert_eq!(
        reach(json!({"transport": "pickup", "pickup_dir": "/etc"})),
        [("connection.transport", "pickup".to_owned()), ("connection.pickup_dir", "/etc".to_owned())]
    );
    // Set beside another transport, or in a block switched off, they are still there to be used later.
    assert_eq!(
        reach(json!({"enabled": false, "host": "smtp.acme.example", "pickup_dir": "/var/spool/x"})),
        [("connection.pickup_dir", "/var/spool/x".to_owned())]
    );
    assert_eq!(
        reach(oauth("http://127.0.0.1:9000/token")),
        [("connection.oauth.token_url", "http://127.0.0.1:9000/token".to_owned())]
    );
}

// ------------------------------------------------------------- properties

fn patch_strategy() -> impl Strategy<Value = PolicyPatch> {
    let name = prop_oneof![Just("ACME"), Just("Plataforma")].prop_map(|n| DisplayName::parse("n", n).unwrap().unwrap());
    let address =
        prop_oneof![Just("a@acme.example"), Just("b@acme.example")].prop_map(|a| EmailAddress::parse("a", a).unwrap());
    let interval = (100i64..=600_000).prop_map(|i| BundleInterval::parse("i", i).unwrap());
    let send_as = prop_oneof![Just(SendAsOthers::Allowed), Just(SendAsOthers::OnBehalf), Just(SendAsOthers::Rewrite)];
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(name),
        proptest::option::of(address),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(interval),
        proptest::option::of(send_as),
    )
        .prop_map(|(dse, name, address, force, bundle, interval, send_as)| PolicyPatch {
            default_sender_enabled: dse,
            default_sender_name: name,
            default_sender_address: address,
            force_default_sender: force,
            bundle_enabled: bundle,
            bundle_interval: interval,
            send_as_others: send_as,
        })
}

/// The value and source the SPEC expects: the last (most specific) level that sets the field.
fn most_specific<T: Clone>(
    levels: &[Option<Level>; 3],
    get: impl Fn(&PolicyPatch) -> Option<T>,
) -> (Option<T>, Source) {
    let sources = [Source::Global, Source::Company, Source::User];
    levels
        .iter()
        .zip(sources)
        .rev()
        .find_map(|(level, source)| level.as_ref().and_then(|l| get(&l.policy)).map(|v| (Some(v), source)))
        .unwrap_or((None, Source::Default))
}

/// Mostly one of the `valid` strings, sometimes anything at all.
// Boxed: proptest's nested value trees are large, and unboxed they overflow a test thread's stack.
fn loose_text(valid: &'static [&'static str]) -> BoxedStrategy<Option<String>> {
    proptest::option::weighted(
        0.7,
        prop_oneof![
            6 => proptest::sample::select(valid).prop_map(str::to_owned),
            1 => "\\PC{0,40}",
            1 => "[ -~\r\n\t]{0,20}",
        ],
    )
    .boxed()
}

/// Mostly within `valid`, sometimes any number at all.
fn loose_number(valid: std::ops::RangeInclusive<i64>) -> BoxedStrategy<Option<i64>> {
    proptest::option::weighted(0.7, prop_oneof![6 => valid, 1 => any::<i64>(), 1 => Just(0), 1 => -5i64..70_000])
        .boxed()
}

fn any_proxy() -> BoxedStrategy<ProxyDoc> {
    (
        proptest::option::of(any::<bool>()),
        loose_text(&["socks5", "http"]),
        loose_text(&["proxy.acme.example", ""]),
        loose_number(1..=65535),
        loose_text(&["p"]),
    )
        .prop_map(|(enabled, kind, address, port, username)| ProxyDoc {
            enabled,
            kind,
            address,
            port,
            username,
            password: None,
            password_set: None,
        })
        .boxed()
}

fn any_connection() -> BoxedStrategy<ConnectionDoc> {
    let server = (
        proptest::option::of(any::<bool>()),
        loose_text(&["smtp", "SMTP", "mapi", "notes"]),
        loose_text(&["smtp.acme.example", "10.0.0.1", "[::1]", " "]),
        loose_number(1..=65535),
        loose_text(&["none", "starttls", "tls", "TLS"]),
        proptest::option::of(any::<bool>()),
        loose_text(&["-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----"]),
    );
    let login = (
        proptest::option::of(any::<bool>()),
        loose_text(&["auto", "plain", "login", "xoauth2"]),
        loose_text(&["u", " ana@acme.example "]),
        loose_text(&["", "s3cret"]),
        loose_number(10..=180),
        proptest::option::of(any_proxy()),
    );
    (server, login)
        .prop_map(
            |(
                (enabled, transport, host, port, security, tls_verify, tls_ca_pem),
                (auth_enabled, auth_mechanism, username, password, timeout_s, proxy),
            )| {
                ConnectionDoc {
                    enabled,
                    transport,
                    host,
                    port,
                    security,
                    auth_enabled,
                    auth_mechanism,
                    username,
                    password: password.map(WriteOnly),
                    password_set: None,
                    timeout_s,
                    max_sessions: timeout_s.map(|t| t / 10),
                    rate_per_minute: None,
                    tls_verify,
                    tls_ca_pem,
                    proxy,
                    oauth: None,
                    sendmail_command: None,
                    pickup_dir: None,
                }
            },
        )
        .boxed()
}

fn any_policy() -> BoxedStrategy<PolicyDoc> {
    (
        proptest::option::of(any::<bool>()),
        loose_text(&["ACME", ""]),
        loose_text(&["noreply@acme.example", " ", "x@@y"]),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        loose_number(100..=600_000),
        loose_text(&["allowed", "on_behalf", "rewrite"]),
    )
        .prop_map(
            |(
                default_sender_enabled,
                default_sender_name,
                default_sender_address,
                force_default_sender,
                bundle_enabled,
                bundle_interval_ms,
                send_as_others,
            )| {
                PolicyDoc {
                    default_sender_enabled,
                    default_sender_name,
                    default_sender_address,
                    force_default_sender,
                    bundle_enabled,
                    bundle_interval_ms,
                    send_as_others,
                }
            },
        )
        .boxed()
}

fn any_doc() -> impl Strategy<Value = SettingsDoc> {
    (proptest::option::of(any_connection()), proptest::option::of(any_policy()))
        .prop_map(|(connection, policy)| SettingsDoc { connection, policy })
}

proptest! {
    #[test]
    fn the_policy_source_is_always_the_most_specific_level_that_sets_the_field(
        present in uniform3(any::<bool>()),
        patches in uniform3(patch_strategy()),
    ) {
        let levels: [Option<Level>; 3] = std::array::from_fn(|i| present[i].then(|| Level { connection: None, policy: patches[i].clone() }));
        let p = resolve(&levels[0], &levels[1], &levels[2]).policy;
        let (v, s) = most_specific(&levels, |p| p.default_sender_enabled);
        prop_assert_eq!(p.default_sender_enabled, Sourced { value: v.unwrap_or(false), source: s });
        let (v, s) = most_specific(&levels, |p| p.default_sender_name.clone());
        prop_assert_eq!(p.default_sender_name, Sourced { value: v, source: s });
        let (v, s) = most_specific(&levels, |p| p.default_sender_address.clone());
        prop_assert_eq!(p.default_sender_address, Sourced { value: v, source: s });
        let (v, s) = most_specific(&levels, |p| p.force_default_sender);
        prop_assert_eq!(p.force_default_sender, Sourced { value: v.unwrap_or(false), source: s });
        let (v, s) = most_specific(&levels, |p| p.bundle_enabled);
        prop_assert_eq!(p.bundle_enabled, Sourced { value: v.unwrap_or(false), source: s });
        let (v, s) = most_specific(&levels, |p| p.bundle_interval);
        prop_assert_eq!(p.bundle_interval, Sourced { value: v.unwrap_or_default(), source: s });
        let (v, s) = most_specific(&levels, |p| p.send_as_others);
        prop_assert_eq!(p.send_as_others, Sourced { value: v.unwrap_or_default(), source: s });
    }

    #[test]
    fn the_connection_comes_whole_from_the_most_specific_enabled_level(
        // Each level's connection block: absent, switched off or switched on.
        states in uniform3(proptest::option::of(any::<bool>())),
    ) {
        let names = ["global", "company", "user"];
        let levels: [Option<Level>; 3] = std::array::from_fn(|i| states[i].and_then(|enabled| server(names[i], enabled)));
        let effective = resolve(&levels[0], &levels[1], &levels[2]);
        let expected = (0..3).rev().find(|&i| states[i] == Some(true));
        match (expected, effective.connection()) {
            (None, conn) => prop_assert_eq!(conn, None),
            (Some(i), Some(conn)) => {
                prop_assert_eq!(effective.connection.unwrap().source.as_str(), names[i]);
                let server = conn.smtp().unwrap();
                let login = server.login.as_ref().unwrap();
                let seen = [server.host.as_str().to_owned(), login.username.clone(), login.password().unwrap().expose().to_owned()];
                prop_assert_eq!(seen, [format!("smtp.{}.example", names[i]), format!("{}-user", names[i]), format!("{}-secret", names[i])]);
            }
            (Some(_), None) => prop_assert!(false, "an enabled level gave no connection"),
        }
    }

    #[test]
    fn parsing_any_document_never_panics_and_errors_name_their_field(doc in any_doc()) {
        match Level::parse(&doc, None) {
            Ok(level) => {
                if let Some(block) = &level.connection {
                    prop_assert_eq!(block.enabled, block.connection().is_some(), "an enabled block is complete");
                }
                let _ = Effective::resolve(Levels { global: Some(&level), company: None, user: None }).explain();
                // What is read back (and exported) parses again to the same level.
                prop_assert_eq!(Level::parse(&level.to_doc(), Some(&level)), Ok(level.clone()));
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors.0 {
                    prop_assert!(e.field.starts_with("connection.") || e.field.starts_with("policy."), "{:?}", e);
                    prop_assert!(e.message.starts_with(&e.field), "{:?}", e);
                }
            }
        }
    }
}
