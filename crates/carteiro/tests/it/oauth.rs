//! XOAUTH2 (Google, Microsoft 365): carteiro logs in with a bearer token,
//! given as is or obtained from a token endpoint (a refresh token, or the
//! client's own credentials), cached, and renewed before it expires. The peer
//! is aiosmtpd speaking Gmail's XOAUTH2; the endpoint a local OAuth 2 server
//! whose tokens work at the peer exactly while it holds them valid.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::app::system_message;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

fn policy() -> Value {
    json!({"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"})
}

/// STARTTLS to the peer at `localhost:port`, logging in as `user` with XOAUTH2.
fn xoauth2(certs: &TestCertificates, port: u16, user: &str, oauth: Value) -> Value {
    json!({
        "connection": {
            "host": "localhost", "port": port, "security": "starttls", "auth_enabled": true,
            "auth_mechanism": "xoauth2", "username": user, "oauth": oauth,
            "timeout_s": 10, "tls_ca_pem": certs.ca_pem
        },
        "policy": policy()
    })
}

/// aiosmtpd with STARTTLS, requiring AUTH, XOAUTH2 on with `flags`.
async fn peer(certs: &TestCertificates, flags: &[String]) -> SmtpPeer {
    let mut args = vec!["--mode", "starttls", "--cert", certs.cert_path.to_str().unwrap()];
    args.extend(["--key", certs.key_path.to_str().unwrap(), "--require-auth"]);
    args.extend(flags.iter().map(String::as_str));
    SmtpPeer::start(&args).await
}

fn refresh_grant(endpoint: &TokenEndpoint) -> Value {
    let o = &endpoint.options;
    json!({"token_url": endpoint.url, "client_id": o.client_id, "client_secret": o.client_secret, "refresh_token": o.refresh_token})
}

/// Test connection of unsaved `settings`, to a test address.
async fn test_settings(app: &Carteiro, settings: Value) -> Value {
    test_connection(app, json!({"settings": settings, "to": "ana@cliente.example"})).await
}

/// The tokens the peer was shown, in order (accepted or not).
async fn tokens_presented(peer: &mut SmtpPeer, count: usize) -> Vec<(String, bool)> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let event = peer.next_event(WAIT).await;
        if event["event"] == "auth" {
            seen.push((event["token"].as_str().unwrap_or_default().to_owned(), event["ok"].as_bool().unwrap()));
        }
    }
    seen
}

#[tokio::test]
async fn a_refresh_token_is_exchanged_cached_and_renewed_before_the_token_expires() {
    let certs = TestCertificates::for_localhost();
    let endpoint = TokenEndpoint::start().await;
    let mut peer = peer(&certs, &endpoint.peer_args()).await;
    let app = Carteiro::start().await;
    let settings = xoauth2(&certs, peer.port, &endpoint.options.user, refresh_grant(&endpoint));

    let report = test_settings(&app, settings.clone()).await;
    assert_eq!(report["ok"], true, "{report:#}");
    let token = step(&report, "token");
    assert_eq!(token["detail"], format!("a new token from {}", endpoint.url), "{report:#}");
    assert!(step(&report, "ehlo")["detail"].as_str().unwrap().contains("XOAUTH2"), "{report:#}");
    assert_eq!(tokens_presented(&mut peer, 1).await, [("tok-1".to_owned(), true)]);

    // The settings never show the secrets back.
    let saved = app.set_global(settings).await;
    let shown = saved.to_string();
    assert!(
        !shown.contains(&endpoint.options.refresh_token) && !shown.contains("carteiro-test-client-secret"),
        "{shown}"
    );
    assert_eq!(saved["connection"]["oauth"]["refresh_token_set"], true, "{saved:#}");

    // Each message needs a valid token at the peer: the first one uses the one
    // in hand, the next, sent after it expired, a renewed one.
    let company = app.create_company("acme").await;
    let first = app.send(&company, system_message(&["ana@cliente.example"])).await;
    app.wait_for_status(&company, &first, "sent", WAIT).await;
    eventually(WAIT, "the first token to expire", || async { endpoint.valid_tokens().is_empty().then_some(()) }).await;
    let second = app.send(&company, system_message(&["bia@cliente.example"])).await;
    let sent = app.wait_for_status(&company, &second, "sent", WAIT).await;
    assert_eq!(sent["attempts"].as_array().unwrap().len(), 1, "the expired token was never tried: {sent:#}");
    let presented = tokens_presented(&mut peer, 2).await;
    assert!(presented.iter().all(|(_, ok)| *ok), "{presented:?}");
    assert_eq!(presented.last().unwrap().0, endpoint.issued().last().unwrap().as_str());

    let requests = endpoint.requests();
    assert!(requests.len() >= 2 && requests.len() <= 3, "one request per token lifetime: {requests:#?}");
    for request in &requests {
        assert_eq!(request.grant_type(), Some("refresh_token"));
        assert_eq!(request.form.get("refresh_token"), Some(&endpoint.options.refresh_token));
        assert_eq!(request.status, 200);
    }
}

#[tokio::test]
async fn a_revoked_grant_defers_the_message_with_the_endpoints_words() {
    let certs = TestCertificates::for_localhost();
    let endpoint = TokenEndpoint::start().await;
    let mut peer = peer(&certs, &endpoint.peer_args()).await;
    let app = Carteiro::start().await;
    let settings = xoauth2(&certs, peer.port, &endpoint.options.user, refresh_grant(&endpoint));
    app.set_global(settings.clone()).await;
    let company = app.create_company("acme").await;
    let first = app.send(&company, system_message(&["ana@cliente.example"])).await;
    app.wait_for_status(&company, &first, "sent", WAIT).await;
    peer.next_message(WAIT).await;

    endpoint.revoke();
    let id = app.send(&company, system_message(&["bia@cliente.example"])).await;
    let deferred = app.wait_for_status(&company, &id, "deferred", WAIT).await;
    // Either the cached token, refused by the server, or the endpoint's refusal.
    let first_try = &deferred["attempts"][0];
    assert!(first_try["code"] == 535 || first_try["reply"].as_str().unwrap().contains("invalid_grant"), "{deferred:#}");
    // The cached token was refused and dropped: the next try asks the endpoint, which says why.
    let words = "the token endpoint refused: invalid_grant (Token has been expired or revoked.)";
    let retried = eventually(WAIT, "a retry that asks the endpoint", || async {
        let message = app.message(&company, &id).await;
        let attempts = message["attempts"].as_array().unwrap().clone();
        attempts.iter().any(|a| a["reply"] == words).then_some(message)
    })
    .await;
    assert_eq!(retried["status"], "deferred", "{retried:#}");

    let report = test_settings(&app, settings).await;
    assert_eq!(report["ok"], false);
    let token = step(&report, "token");
    assert_eq!((token["ok"].as_bool(), token["detail"].as_str()), (Some(false), Some(words)), "{report:#}");
    assert!(report["hint"].as_str().unwrap().contains("authorise carteiro again"), "{report:#}");
}

#[tokio::test]
async fn client_credentials_ask_for_the_microsoft_365_scope() {
    let certs = TestCertificates::for_localhost();
    let options =
        TokenOptions { scope: Some("https://outlook.office365.com/.default".into()), ..TokenOptions::default() };
    let endpoint = TokenEndpoint::start_with(options).await;
    let mut peer = peer(&certs, &endpoint.peer_args()).await;
    let app = Carteiro::start().await;
    let o = &endpoint.options;
    let grant = json!({"token_url": endpoint.url, "client_id": o.client_id, "client_secret": o.client_secret});

    let report = test_settings(&app, xoauth2(&certs, peer.port, &o.user, grant)).await;
    assert_eq!(report["ok"], true, "{report:#}");
    peer.next_message(WAIT).await;
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].grant_type(), Some("client_credentials"));
    assert_eq!(requests[0].form.get("scope").map(String::as_str), Some("https://outlook.office365.com/.default"));
}

#[tokio::test]
async fn a_static_token_is_presented_as_is_and_a_refusal_carries_the_providers_words() {
    let certs = TestCertificates::for_localhost();
    let user = "relay@acme.example";
    let mut peer = peer(&certs, &["--xoauth2".into(), format!("{user}:ya29.static-token")]).await;
    let app = Carteiro::start().await;

    let report =
        test_settings(&app, xoauth2(&certs, peer.port, user, json!({"access_token": "ya29.static-token"}))).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(step(&report, "token")["detail"], "the access token in the settings");
    peer.next_message(WAIT).await;

    let report = test_settings(&app, xoauth2(&certs, peer.port, user, json!({"access_token": "ya29.expired"}))).await;
    assert_eq!(report["ok"], false, "{report:#}");
    let auth = step(&report, "auth");
    let detail = auth["detail"].as_str().unwrap();
    assert!(detail.contains("535") && detail.contains(r#"the provider says: {"status":"401""#), "{detail}");
    assert!(report["hint"].as_str().unwrap().contains("XOAUTH2 token"), "{report:#}");
}

#[tokio::test]
async fn the_token_endpoint_is_reached_through_the_connections_proxy() {
    let certs = TestCertificates::for_localhost();
    let endpoint = TokenEndpoint::start().await;
    let mut peer = peer(&certs, &endpoint.peer_args()).await;
    let proxy = HttpProxy::start(None).await;
    let app = Carteiro::start().await;
    let mut settings = xoauth2(&certs, peer.port, &endpoint.options.user, refresh_grant(&endpoint));
    settings["connection"]["proxy"] =
        json!({"enabled": true, "kind": "http", "address": "127.0.0.1", "port": proxy.port});

    let report = test_settings(&app, settings).await;
    assert_eq!(report["ok"], true, "{report:#}\n{}", proxy.logs());
    peer.next_message(WAIT).await;
    let endpoint_port: u16 = endpoint.url.rsplit(':').next().unwrap().trim_end_matches("/token").parse().unwrap();
    assert_eq!(proxy.connections_to(endpoint_port), 1, "the token request went through the proxy:\n{}", proxy.logs());
    assert_eq!(proxy.connections_to(peer.port), 1, "so did the SMTP session:\n{}", proxy.logs());
}
