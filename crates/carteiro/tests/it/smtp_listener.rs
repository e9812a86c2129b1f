//! The SMTP submission listener against real clients: swaks (STARTTLS, AUTH
//! with a company API key), Python's smtplib for the raw exchanges and a
//! burst of concurrent sessions. What it accepts goes the API's way: the same
//! sender rules, queue and idempotency, delivered to aiosmtpd.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::peers::{SmtpPeer, free_port, python};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

/// carteiro with its listener on a free port, sending to an aiosmtpd peer.
async fn started(extra: &[&str]) -> (Carteiro, SmtpPeer, Company, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--smtp-listen", listen.as_str()];
    args.extend_from_slice(extra);
    let app = Carteiro::start_with(&args, &[]).await;
    let peer = SmtpPeer::plain().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    (app, peer, acme, port)
}

/// Runs swaks; its whole transcript.
async fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}"), "--timeout", "20"])
        .args(args)
        .output()
        .await
        .expect("swaks runs: the test command installs it");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn queued_id(transcript: &str) -> String {
    let at = transcript.find("queued as ").unwrap_or_else(|| panic!("no id in: {transcript}"));
    transcript[at + 10..].split_whitespace().next().unwrap().to_owned()
}

/// A plain-text exchange: each line sent, each reply read (multi-line replies whole).
struct Raw {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(port: u16) -> (Self, String) {
        let (read, write) = TcpStream::connect(("127.0.0.1", port)).await.unwrap().into_split();
        let mut raw = Self { lines: BufReader::new(read).lines(), write };
        let greeting = raw.reply().await;
        (raw, greeting)
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line()).await.unwrap().unwrap().unwrap_or_default();
            all.push_str(&line);
            all.push('\n');
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    async fn say(&mut self, line: &str) -> String {
        self.write.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn a_message_over_starttls_with_an_api_key_is_delivered_as_the_api_would() {
    let (app, mut peer, acme, port) = started(&[]).await;
    let message = [
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "erp",
        "--auth-password",
        acme.key.as_str(),
        "--from",
        "ana@acme.example",
        "--to",
        "cliente@example.com",
        "--header",
        "From: Ana Souza <ana@acme.example>",
        "--header",
        "Subject: Pedido 17 aprovado",
        "--header",
        "Message-Id: <pedido-17@erp.acme.example>",
        "--body",
        "O pedido 17 foi aprovado.",
    ];
    let (ok, transcript) = swaks(port, &message).await;
    assert!(ok, "{transcript}");
    assert!(transcript.contains("250 2.0.0 queued as"), "{transcript}");
    let id = queued_id(&transcript);
    let arrived = peer.next_message(WAIT).await;
    assert_eq!(arrived.header("Subject").as_deref(), Some("Pedido 17 aprovado"));
    assert_eq!(
        arrived.header("From").as_deref(),
        Some("\"Ana Souza\" <ana@acme.example>"),
        "the From header is the acting user"
    );
    assert_eq!(arrived.mail_from, "noreply@plataforma.example", "the envelope sender follows the sender rules");
    assert_eq!(arrived.rcpt_tos, ["cliente@example.com"]);
    let stored = app.message(&acme, &id).await;
    assert_eq!((stored["kind"].as_str(), stored["actor_id"].as_str()), (Some("user"), Some("ana@acme.example")));
    app.wait_for_status(&acme, &id, "sent", WAIT).await;

    // The same Message-ID again is the same message: nothing new is queued.
    let (ok, again) = swaks(port, &message).await;
    assert!(ok, "{again}");
    assert_eq!(queued_id(&again), id);
    let (_, listed) = app.call(Method::GET, "/api/v1/messages", Some(&acme.key), None).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // From the default sender, a system message.
    let (ok, transcript) = swaks(
        port,
        &[
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "erp",
            "--auth-password",
            acme.key.as_str(),
            "--from",
            "noreply@plataforma.example",
            "--to",
            "cliente@example.com",
            "--header",
            "Subject: Recuperação de senha",
            "--body",
            "Código 123456.",
        ],
    )
    .await;
    assert!(ok, "{transcript}");
    let system = app.message(&acme, &queued_id(&transcript)).await;
    assert_eq!(system["kind"], "system");
    let arrived = peer.next_message(WAIT).await;
    assert!(arrived.header("From").unwrap().contains("<noreply@plataforma.example>"), "{}", arrived.text());
}

#[tokio::test]
async fn a_wrong_key_gets_535_and_nothing_logs_in_or_sends_before_tls() {
    let (app, _peer, acme, port) = started(&[]).await;
    let (ok, transcript) = swaks(
        port,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "erp",
            "--auth-password",
            "ck_not-a-key",
            "--from",
            "ana@acme.example",
            "--to",
            "cliente@example.com",
        ],
    )
    .await;
    assert!(!ok);
    assert!(transcript.contains("535 5.7.8"), "{transcript}");

    let (mut raw, greeting) = Raw::connect(port).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let ehlo = raw.say("EHLO client.example").await;
    assert!(ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"), "no AUTH offered before TLS: {ehlo}");
    let plain = base64_plain(&acme.key);
    assert!(raw.say(&format!("AUTH PLAIN {plain}")).await.starts_with("538 5.7.11"), "AUTH before TLS is refused");
    assert!(raw.say("MAIL FROM:<ana@acme.example>").await.starts_with("530 5.7.0"));
    assert!(raw.say("BDAT 10 LAST").await.starts_with("502 5.5.1"));
    assert!(raw.say("FROB").await.starts_with("500 5.5.1"));
    assert!(raw.say("QUIT").await.starts_with("221 2.0.0"));
    let (_, listed) = app.call(Method::GET, "/api/v1/messages", Some(&acme.key), None).await;
    assert!(listed.as_array().unwrap().is_empty());
}

fn base64_plain(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0erp\0{key}"))
}

#[tokio::test]
async fn plain_auth_on_loopback_only_when_allowed_and_limits_hold() {
    let (app, mut peer, acme, port) =
        started(&["--smtp-allow-plain-auth-on-loopback", "--max-message-bytes", "4096", "--smtp-max-commands", "20"])
            .await;
    let (mut raw, _) = Raw::connect(port).await;
    assert!(raw.say("EHLO client.example").await.contains("250-SIZE 4096"));
    assert!(raw.say(&format!("AUTH PLAIN {}", base64_plain(&acme.key))).await.starts_with("235 2.7.0"));
    assert!(raw.say("MAIL FROM:<ana@acme.example> SIZE=100000").await.starts_with("552 5.3.4"), "SIZE over the limit");
    assert!(raw.say("MAIL FROM:<ana@acme.example>").await.starts_with("250 2.1.0"));
    assert!(raw.say("RCPT TO:<not an address>").await.starts_with("501"));
    assert!(raw.say("RCPT TO:<cliente@example.com>").await.starts_with("250 2.1.5"));
    assert!(raw.say("DATA").await.starts_with("354"));
    let big = format!("From: ana@acme.example\r\nSubject: big\r\n\r\n{}\r\n.", vec!["x".repeat(70); 100].join("\r\n"));
    assert!(raw.say(&big).await.starts_with("552 5.3.4"), "over --max-message-bytes after the dot");
    // The session goes on; a pipelined small message is taken.
    raw.write.write_all(b"MAIL FROM:<ana@acme.example>\r\nRCPT TO:<cliente@example.com>\r\nDATA\r\n").await.unwrap();
    for expected in ["250 2.1.0", "250 2.1.5", "354"] {
        let reply = raw.reply().await;
        assert!(reply.starts_with(expected), "{reply}");
    }
    let done =
        raw.say("From: Ana <ana@acme.example>\r\nSubject: small\r\n\r\n..a line that starts with a dot\r\n.").await;
    assert!(done.starts_with("250 2.0.0 queued as"), "{done}");
    let arrived = peer.next_message(WAIT).await;
    assert!(arrived.text().contains("\r\n.a line that starts with a dot"), "dot-stuffing undone: {}", arrived.text());
    // Too many commands close the session.
    let mut last = String::new();
    for _ in 0..20 {
        last = raw.say("NOOP").await;
        if last.starts_with("421") {
            break;
        }
    }
    assert!(last.starts_with("421 4.7.0"), "{last}");
    drop(app);
}

#[tokio::test]
async fn a_hundred_sessions_at_once_are_all_taken_or_told_to_retry_and_none_is_lost() {
    let (app, mut peer, acme, port) = started(&["--smtp-max-connections-per-ip", "60"]).await;
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_burst.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args(["127.0.0.1", &port.to_string(), &acme.key, "100"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let burst: Value = serde_json::from_slice(&output.stdout).unwrap();
    let accepted: Vec<&str> = burst["accepted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let retry = burst["retry"].as_u64().unwrap() as usize;
    assert!(burst["other"].as_array().unwrap().is_empty(), "every session was taken or told to retry: {burst}");
    assert_eq!(accepted.len() + retry, 100, "{burst}");
    assert!(accepted.len() >= 60, "at least the sessions the per-IP limit lets in are taken: {burst}");
    // Every accepted message is delivered, once.
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < accepted.len() {
        let message = peer.next_message(WAIT).await;
        assert!(delivered.insert(message.header("Subject").unwrap()), "delivered twice");
    }
    for id in &accepted {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
}
