//! Proxies (SPEC §4, Benner): the SMTP session, STARTTLS included, runs
//! through a real SOCKS5 proxy (Dante) or a real HTTP CONNECT proxy
//! (tinyproxy), with and without a login; a refused login is told as such;
//! a blank address means the system's `ALL_PROXY`, honouring `NO_PROXY`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::app::system_message;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);
const ACCOUNT: &str = "relay@plataforma.example";
const PASSWORD: &str = "s3nha-do-relay";

fn policy() -> Value {
    json!({"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"})
}

/// STARTTLS with AUTH to the peer at `localhost:port`, through `proxy`.
fn through(certs: &TestCertificates, port: u16, proxy: Value) -> Value {
    json!({
        "connection": {
            "host": "localhost", "port": port, "security": "starttls", "auth_enabled": true,
            "username": ACCOUNT, "password": PASSWORD, "timeout_s": 10, "tls_ca_pem": certs.ca_pem,
            "proxy": proxy
        },
        "policy": policy()
    })
}

/// Test connection of unsaved `settings`, to a test address.
async fn test_settings(app: &Carteiro, settings: Value) -> Value {
    test_connection(app, json!({"settings": settings, "to": "ana@cliente.example"})).await
}

/// Test connection through the proxy shows its steps; then a real message
/// goes through it and arrives at the peer after STARTTLS and AUTH.
async fn delivers_through(proxy: Value, connections_to: impl Fn(u16) -> usize, logs: impl Fn() -> String) {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;

    let report = test_settings(&app, through(&certs, peer.port, proxy.clone())).await;
    assert_eq!(report["ok"], true, "{report:#}\n{}", logs());
    assert_eq!(
        step_names(&report),
        ["proxy", "tunnel", "greeting", "ehlo", "starttls", "tls", "ehlo", "auth", "mail", "rcpt", "data"],
        "{report:#}"
    );
    let tunnel = step(&report, "tunnel");
    assert!(
        tunnel["detail"].as_str().unwrap().contains(&format!("tunnel open to localhost:{}", peer.port)),
        "{tunnel}"
    );
    peer.next_message(WAIT).await;

    app.set_global(through(&certs, peer.port, proxy)).await;
    let company = app.create_company("acme").await;
    let id = app.send(&company, system_message(&["ana@cliente.example"])).await;
    app.wait_for_status(&company, &id, "sent", WAIT).await;
    let arrived = peer.next_message(WAIT).await;
    assert_eq!(arrived.rcpt_tos, ["ana@cliente.example"]);
    assert!(arrived.auth_user.as_deref() == Some(ACCOUNT) && arrived.tls, "{arrived:?}");
    assert!(connections_to(peer.port) >= 2, "the proxy opened no tunnels of its own:\n{}", logs());
}

#[tokio::test]
async fn mail_goes_through_a_socks5_proxy_with_starttls_inside_the_tunnel() {
    let socks = SocksProxy::start(None).await;
    let proxy = json!({"enabled": true, "kind": "socks5", "address": "127.0.0.1", "port": socks.port});
    delivers_through(proxy, |port| socks.connections_to(port), || socks.logs()).await;
}

#[tokio::test]
async fn mail_goes_through_a_socks5_proxy_that_wants_a_login() {
    let socks = SocksProxy::start(Some(("carteiro-socks-a", "pr0xy-senha-A"))).await;
    let proxy = json!({"enabled": true, "kind": "socks5", "address": "127.0.0.1", "port": socks.port,
                       "username": "carteiro-socks-a", "password": "pr0xy-senha-A"});
    delivers_through(proxy, |port| socks.connections_to(port), || socks.logs()).await;
}

#[tokio::test]
async fn mail_goes_through_an_http_connect_proxy() {
    let http = HttpProxy::start(None).await;
    let proxy = json!({"enabled": true, "kind": "http", "address": "127.0.0.1", "port": http.port});
    delivers_through(proxy, |port| http.connections_to(port), || http.logs()).await;
}

#[tokio::test]
async fn mail_goes_through_an_http_connect_proxy_that_wants_basic_auth() {
    let http = HttpProxy::start(Some(("proxyuser", "pr0xy-senha-B"))).await;
    let proxy = json!({"enabled": true, "kind": "http", "address": "127.0.0.1", "port": http.port,
                       "username": "proxyuser", "password": "pr0xy-senha-B"});
    delivers_through(proxy, |port| http.connections_to(port), || http.logs()).await;
}

/// The failed step, its words and the hint, for a proxy that refuses.
async fn refused(proxy: Value) -> (String, String) {
    let certs = TestCertificates::for_localhost();
    let peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    let report = test_settings(&app, through(&certs, peer.port, proxy)).await;
    assert_eq!(report["ok"], false, "{report:#}");
    let last = report["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["step"].as_str(), last["ok"].as_bool()), (Some("tunnel"), Some(false)), "{report:#}");
    (last["detail"].as_str().unwrap().to_owned(), report["hint"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_wrong_socks5_password_is_reported_as_such() {
    let socks = SocksProxy::start(Some(("carteiro-socks-b", "the-right-one"))).await;
    let (detail, hint) = refused(json!({"enabled": true, "kind": "socks5", "address": "127.0.0.1", "port": socks.port,
                                        "username": "carteiro-socks-b", "password": "a-wrong-one"}))
    .await;
    assert_eq!(detail, "the SOCKS5 proxy refused the user name and password");
    assert!(hint.contains("proxy's user name and password"), "{hint}");
    let (detail, _) =
        refused(json!({"enabled": true, "kind": "socks5", "address": "127.0.0.1", "port": socks.port})).await;
    assert_eq!(detail, "the SOCKS5 proxy requires a user name and password");
}

#[tokio::test]
async fn a_wrong_http_proxy_password_is_reported_as_such() {
    let http = HttpProxy::start(Some(("proxyuser", "the-right-one"))).await;
    let (detail, hint) = refused(json!({"enabled": true, "kind": "http", "address": "127.0.0.1", "port": http.port,
                                        "username": "proxyuser", "password": "a-wrong-one"}))
    .await;
    assert!(detail.starts_with("the HTTP proxy refused the user name and password"), "{detail}");
    assert!(hint.contains("proxy's user name and password"), "{hint}");
    let (detail, _) =
        refused(json!({"enabled": true, "kind": "http", "address": "127.0.0.1", "port": http.port})).await;
    assert!(detail.starts_with("the HTTP proxy requires a user name and password (407"), "{detail}");
}

#[tokio::test]
async fn a_blank_address_follows_all_proxy_and_no_proxy() {
    let socks = SocksProxy::start(None).await;
    let mut peer = SmtpPeer::plain().await;
    let all_proxy = socks.url();
    let app = Carteiro::start_with(&[], &[("ALL_PROXY", &all_proxy), ("NO_PROXY", "localhost")]).await;
    let port = peer.port;
    let settings = |host: &str| {
        json!({"connection": {"host": host, "port": port, "timeout_s": 10,
                              "proxy": {"enabled": true, "kind": "socks5"}},
               "policy": policy()})
    };

    // 127.0.0.1 is not in NO_PROXY: through the proxy ALL_PROXY names.
    let report = test_settings(&app, settings("127.0.0.1")).await;
    assert_eq!(report["ok"], true, "{report:#}\n{}", socks.logs());
    assert_eq!(step_names(&report)[..2], ["proxy", "tunnel"], "{report:#}");
    assert!(
        step(&report, "proxy")["detail"].as_str().unwrap().contains("from the system's proxy variables"),
        "{report:#}"
    );
    assert_eq!(socks.connections_to(peer.port), 1, "{}", socks.logs());
    peer.next_message(WAIT).await;

    // localhost is: straight to the server, and the steps say why.
    let report = test_settings(&app, settings("localhost")).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(step_names(&report)[..3], ["proxy", "dns", "tcp"], "{report:#}");
    assert!(step(&report, "proxy")["detail"].as_str().unwrap().contains("NO_PROXY"), "{report:#}");
    assert_eq!(socks.connections_to(peer.port), 1, "the proxy was used for a host NO_PROXY covers");
    peer.next_message(WAIT).await;
}
