//! Messages reach real SMTP servers with the right sender, are retried on
//! temporary failures, and fail on permanent ones with the reply kept.

use std::time::Duration;

use serde_json::json;

use crate::helpers::app::{system_message, user_message};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_user_message_reaches_the_server_from_the_acting_user() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, user_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["cliente@example.com"]);
    assert_eq!(received.mail_from, "noreply@plataforma.example", "the envelope is the default sender, never the user");
    assert_eq!(received.header("From").unwrap(), "\"Ana Souza\" <ana@acme.example>");
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    assert_eq!(message["attempts"][0]["code"], 250);
    assert_eq!(message["recipients"][0]["state"], "sent");
}

#[tokio::test]
async fn starttls_with_authentication_uses_the_account_as_envelope_sender() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, "relay@acme.example:s3nha-do-relay").await;
    let app = Carteiro::start().await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(
        &acme,
        json!({"connection": {
            "enabled": true, "host": "localhost", "port": peer.port, "security": "starttls", "auth_enabled": true,
            "username": "relay@acme.example", "password": "s3nha-do-relay", "timeout_s": 10, "tls_ca_pem": certs.ca_pem
        }}),
    )
    .await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert!(received.tls, "the session was encrypted");
    assert_eq!(received.auth_user.as_deref(), Some("relay@acme.example"));
    assert_eq!(received.mail_from, "relay@acme.example");
    assert_eq!(
        received.header("From").unwrap(),
        "\"acme Ltda\" <contato@acme.example>",
        "system messages without a default sender use the company's address"
    );
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
}

// ---------------------------------------------------------------------------
// Small helpers of this file.

/// The company's own connection to a server on loopback (`enabled: true`), merged with `extra`.
fn company_connection(host: &str, port: u16, extra: serde_json::Value) -> serde_json::Value {
    let mut connection = json!({"enabled": true, "host": host, "port": port, "security": "none", "timeout_s": 10});
    for (k, v) in extra.as_object().expect("extra connection fields are an object") {
        connection[k] = v.clone();
    }
    json!({"connection": connection})
}

/// The message's attempts, in the order carteiro records them.
fn attempts(message: &serde_json::Value) -> Vec<serde_json::Value> {
    message["attempts"].as_array().cloned().unwrap_or_default()
}

/// The recipient of that address in the message read back.
fn recipient<'a>(message: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    message["recipients"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["address"] == address))
        .unwrap_or_else(|| panic!("{address} is not among the recipients of {message:#}"))
}

/// The company's messages in that status, as the list API returns them.
async fn messages_in(app: &Carteiro, company: &Company, status: &str) -> Vec<serde_json::Value> {
    app.messages(company, &format!("status={status}&limit=1000")).await
}

/// An RFC 3339 time that far from now.
fn in_the_future(after: Duration) -> String {
    (time::OffsetDateTime::now_utc() + after).format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// A time the API wrote (RFC 3339).
fn instant(value: &serde_json::Value) -> time::OffsetDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// The message's text with its headers only (what every recipient sees above the body).
fn head_of(received: &PeerMessage) -> String {
    received.text().split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------
// Security and authentication.

#[tokio::test]
async fn implicit_tls_delivers_to_a_server_whose_certificate_is_trusted_through_the_extra_ca() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::implicit_tls(&certs).await;
    let app = Carteiro::start().await;
    app.use_server(1).await; // the global level only gives the default sender here
    let acme = app.create_company("acme").await;
    app.set_company_settings(
        &acme,
        company_connection("localhost", peer.port, json!({"security": "tls", "tls_ca_pem": certs.ca_pem})),
    )
    .await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert!(received.tls, "the session was encrypted from the first byte");
    assert_eq!(received.rcpt_tos, ["cliente@example.com"]);
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    let attempts = attempts(&message);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["code"], 250);
    assert_eq!(attempts[0]["server"], format!("localhost:{}", peer.port));
}

#[tokio::test]
async fn a_certificate_for_another_name_defers_the_message_and_says_why() {
    let certs = TestCertificates::for_names(&["other.example"]);
    let mut peer = SmtpPeer::implicit_tls(&certs).await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    // The CA is trusted: only the name is wrong.
    app.set_company_settings(
        &acme,
        company_connection("localhost", peer.port, json!({"security": "tls", "tls_ca_pem": certs.ca_pem})),
    )
    .await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    // A TLS failure is temporary, as in Postfix: the message waits for the server (or the settings) to be fixed.
    let message = app.wait_for_status(&acme, &id, "deferred", WAIT).await;
    let first = &attempts(&message)[0];
    let reply = first["reply"].as_str().unwrap().to_lowercase();
    assert!(
        reply.contains("certificate") && reply.contains("name"),
        "the reply names the certificate's name problem: {first:#}"
    );
    assert!(first["code"].is_null(), "no SMTP reply was ever read: {first:#}");
    assert_eq!(recipient(&message, "cliente@example.com")["state"], "pending");
    assert!(message["next_attempt_at"].is_string(), "a retry is planned: {message:#}");
    assert!(peer.received().is_empty(), "nothing was sent to a server that could not prove its name");
}

#[tokio::test]
async fn a_refused_password_defers_the_message_until_the_operator_fixes_it() {
    let mut peer = SmtpPeer::start(&["--auth", "relay@acme.example:the-right-one", "--require-auth"]).await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    let login = |password: &str| json!({"auth_enabled": true, "username": "relay@acme.example", "password": password});
    app.set_company_settings(&acme, company_connection("127.0.0.1", peer.port, login("a-wrong-one"))).await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    // 535 at AUTH is soft (Postfix's smtp_sasl_auth_soft_bounce): the message is kept, not failed.
    let message = app.wait_for_status(&acme, &id, "deferred", WAIT).await;
    let first = &attempts(&message)[0];
    assert_eq!(first["code"], 535, "the server's refusal is recorded: {first:#}");
    assert_eq!(first["outcome"], "deferred");
    assert_eq!(recipient(&message, "cliente@example.com")["state"], "pending");

    // The operator corrects the password: the same message goes out.
    app.set_company_settings(&acme, company_connection("127.0.0.1", peer.port, login("the-right-one"))).await;
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.auth_user.as_deref(), Some("relay@acme.example"));
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    assert_eq!(attempts(&message).last().unwrap()["code"], 250);
}

// ---------------------------------------------------------------------------
// Replies: temporary, permanent, per recipient.

#[tokio::test]
async fn a_451_after_data_is_retried_and_both_attempts_are_kept_in_order() {
    let mut peer = SmtpPeer::start(&["--data-replies", "451,250"]).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let refused = peer.next_event(WAIT).await;
    assert_eq!((refused["event"].as_str(), refused["code"].as_u64()), (Some("data_refused"), Some(451)));
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["cliente@example.com"]);
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    let attempts = attempts(&message);
    let story: Vec<_> = attempts.iter().map(|a| (a["code"].as_i64(), a["outcome"].as_str())).collect();
    assert_eq!(story, [(Some(451), Some("deferred")), (Some(250), Some("sent"))]);
    assert!(attempts[0]["reply"].as_str().unwrap().contains("try again later"), "{:#}", attempts[0]);
    assert!(instant(&attempts[0]["at"]) <= instant(&attempts[1]["at"]), "attempts are listed oldest first");
    assert!(peer.received().is_empty(), "the message was delivered once");
}

#[tokio::test]
async fn a_550_after_data_fails_the_message_at_once_and_keeps_the_reply() {
    let mut peer = SmtpPeer::start(&["--data-replies", "550"]).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let message = app.wait_for_status(&acme, &id, "failed", WAIT).await;
    let attempts = attempts(&message);
    assert_eq!(attempts.len(), 1, "a permanent refusal is not retried: {message:#}");
    assert_eq!(attempts[0]["code"], 550);
    assert!(
        attempts[0]["reply"].as_str().unwrap().contains("5.7.1 refused (scripted)"),
        "the server's words are kept: {:#}",
        attempts[0]
    );
    assert!(message["last_reply"].as_str().unwrap().contains("refused (scripted)"), "{message:#}");
    assert!(message["next_attempt_at"].is_null(), "no retry is planned: {message:#}");
    let rcpt = recipient(&message, "cliente@example.com");
    assert_eq!((rcpt["state"].as_str(), rcpt["code"].as_i64()), (Some("failed"), Some(550)));
    let refused = peer.next_event(WAIT).await;
    assert_eq!(refused["code"], 550);
    assert!(peer.received().is_empty());
}

#[tokio::test]
async fn a_recipient_refused_at_rcpt_does_not_stop_delivery_to_the_others() {
    let mut peer = SmtpPeer::start(&["--rcpt-reply", "bad@example.com=550"]).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, system_message(&["good@example.com", "bad@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["good@example.com"]);
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    let good = recipient(&message, "good@example.com");
    let bad = recipient(&message, "bad@example.com");
    assert_eq!((good["state"].as_str(), good["code"].as_i64()), (Some("sent"), Some(250)));
    assert_eq!((bad["state"].as_str(), bad["code"].as_i64()), (Some("failed"), Some(550)));
    assert!(bad["reply"].as_str().unwrap().contains("5.1.1"), "{bad:#}");
    let attempts = attempts(&message);
    assert_eq!(attempts.len(), 1, "a permanent refusal of one recipient is not retried");
    let refusals = attempts[0]["refusals"].as_array().unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0]["address"], "bad@example.com");
    assert_eq!(refusals[0]["code"], 550);
}

#[tokio::test]
async fn a_recipient_refused_for_now_at_rcpt_is_retried_alone() {
    // The first server puts off one recipient; the next attempt goes to a server that takes everyone.
    let mut busy = SmtpPeer::start(&["--rcpt-reply", "later@example.com=451"]).await;
    let mut open = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, company_connection("127.0.0.1", busy.port, json!({}))).await;

    let id = app.send(&acme, system_message(&["now@example.com", "later@example.com"])).await;

    let first = busy.next_message(WAIT).await;
    assert_eq!(first.rcpt_tos, ["now@example.com"]);
    let message = app.wait_for_status(&acme, &id, "deferred", WAIT).await;
    assert_eq!(recipient(&message, "now@example.com")["state"], "sent");
    let later = recipient(&message, "later@example.com");
    assert_eq!((later["state"].as_str(), later["code"].as_i64()), (Some("pending"), Some(451)));
    assert_eq!(attempts(&message)[0]["refusals"][0]["address"], "later@example.com");

    app.set_company_settings(&acme, company_connection("127.0.0.1", open.port, json!({}))).await;
    let second = open.next_message(WAIT).await;
    assert_eq!(second.rcpt_tos, ["later@example.com"], "only the recipient still pending is tried again");
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    assert_eq!(recipient(&message, "later@example.com")["state"], "sent");
    assert!(busy.received().is_empty(), "now@example.com got the message once");
    assert!(open.received().is_empty());
}

// ---------------------------------------------------------------------------
// Slow and dead servers.

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_after_the_timeout() {
    let silent = SilentServer::start().await;
    let app = Carteiro::start().await;
    app.use_server(silent.port).await; // timeout_s: 10, the minimum

    let acme = app.create_company("acme").await;
    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let message = app.wait_for_status(&acme, &id, "deferred", Duration::from_secs(20)).await;
    let first = &attempts(&message)[0];
    let ms = first["ms"].as_i64().unwrap();
    assert!((9_000..=13_000).contains(&ms), "the attempt lasted timeout_s and a little more, not {ms} ms: {first:#}");
    assert!(first["reply"].as_str().unwrap().contains("within the timeout"), "{first:#}");
    assert!(first["code"].is_null());
}

#[tokio::test]
async fn one_companys_silent_server_does_not_delay_another_companys_mail() {
    let silent = SilentServer::start().await;
    let mut peer = SmtpPeer::plain().await;
    // Fewer delivery slots in the whole process than the stuck company has messages.
    let app = Carteiro::start_with(&["--max-in-flight", "12"], &[]).await;
    app.use_server(peer.port).await;
    let stuck = app.create_company("stuck").await;
    let fine = app.create_company("fine").await;
    app.set_company_settings(&stuck, company_connection("127.0.0.1", silent.port, json!({}))).await;

    let mut stuck_ids = Vec::new();
    for n in 0..20 {
        stuck_ids.push(app.send(&stuck, system_message(&[&format!("cliente{n}@example.com")])).await);
    }
    // Every session the stuck lane may open hangs on the silent server.
    eventually(WAIT, "the stuck company's sessions to hang on the silent server", || async {
        (silent.accepted() >= 4).then_some(())
    })
    .await;

    let submitted = std::time::Instant::now();
    let id = app.send(&fine, system_message(&["outro@example.com"])).await;

    let received = peer.next_message(Duration::from_secs(3)).await;
    assert_eq!(received.rcpt_tos, ["outro@example.com"]);
    app.wait_for_status(&fine, &id, "sent", Duration::from_secs(3)).await;
    assert!(submitted.elapsed() < Duration::from_secs(3), "delivered in {:?}", submitted.elapsed());
    for id in &stuck_ids {
        let status = app.message(&stuck, id).await["status"].clone();
        assert!(
            status == "sending" || status == "queued",
            "the stuck company's message {id} is still waiting, not {status}"
        );
    }
}

#[tokio::test]
async fn a_company_whose_server_was_silent_or_down_gets_its_mail_once_the_server_is_back() {
    let silent = SilentServer::start().await;
    let down = crate::helpers::peers::free_port();
    let app = Carteiro::start().await;
    let mut waiting = Vec::new();
    for (slug, port) in [("silenciosa", silent.port), ("fora", down)] {
        let company = app.create_company(slug).await;
        app.set_company_settings(
            &company,
            json!({"connection": company_connection("127.0.0.1", port, json!({}))["connection"],
                   "policy": {"default_sender_enabled": true, "default_sender_address": format!("noreply@{slug}.example")}}),
        )
        .await;
        for n in 0..3 {
            waiting.push((
                port,
                company.clone(),
                app.send(&company, system_message(&[&format!("c{n}@example.com")])).await,
            ));
        }
    }
    // A silent server is given up after the timeout (10 s), a refused connection at once: deferred both.
    for (_, company, id) in &waiting {
        let message = app.wait_for_status(company, id, "deferred", Duration::from_secs(30)).await;
        assert!(attempts(&message)[0]["code"].is_null(), "no server reply: {message:#}");
    }

    // Both servers come back, on the same addresses.
    let port = silent.port;
    drop(silent);
    // The silent server's task lets go of its port once the runtime has cancelled it.
    eventually(Duration::from_secs(5), "the silent server's port to be free", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err().then_some(())
    })
    .await;
    let sinks = [SmtpSink::start_on(port, &[]).await, SmtpSink::start_on(down, &[]).await];
    for (_, company, id) in &waiting {
        app.wait_for_status(company, id, "sent", Duration::from_secs(30)).await;
    }
    for sink in &sinks {
        assert_eq!(sink.counted(), 3, "each company's three messages, once each");
    }
}

// ---------------------------------------------------------------------------
// Volume and lifetime.

#[tokio::test]
async fn five_hundred_messages_in_two_batches_all_reach_smtp_sink() {
    let sink = SmtpSink::start().await;
    let app = Carteiro::start().await;
    app.use_server(sink.port).await;
    let acme = app.create_company("acme").await;

    for batch in 0..2 {
        let messages: Vec<_> =
            (0..250).map(|n| system_message(&[&format!("cliente{batch}-{n}@example.com")])).collect();
        let (status, body) = app
            .call(reqwest::Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(json!({"messages": messages})))
            .await;
        assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 250);
        assert!(results.iter().all(|r| r["id"].is_string()), "every item was accepted: {body}");
    }

    eventually(Duration::from_secs(60), "500 messages at smtp-sink", || async { (sink.count() >= 500).then_some(()) })
        .await;
    assert_eq!(sink.count(), 500, "each message was delivered once");
    eventually(WAIT, "500 messages read back as sent", || async {
        (messages_in(&app, &acme, "sent").await.len() == 500).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_message_still_refused_for_now_at_the_end_of_its_queue_lifetime_fails() {
    let always_later = vec!["451"; 50].join(",");
    let mut peer = SmtpPeer::start(&["--data-replies", &always_later]).await;
    let app = Carteiro::start_with(&["--max-queue-lifetime-s", "1"], &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let message = app.wait_for_status(&acme, &id, "failed", WAIT).await;
    let attempts = attempts(&message);
    assert!(attempts.len() >= 2, "it was retried within its lifetime: {message:#}");
    assert!(attempts.iter().all(|a| a["code"] == 451), "{attempts:#?}");
    assert_eq!(attempts.last().unwrap()["outcome"], "failed");
    let rcpt = recipient(&message, "cliente@example.com");
    let reply = rcpt["reply"].as_str().unwrap();
    assert_eq!((rcpt["state"].as_str(), rcpt["code"].as_i64()), (Some("failed"), Some(451)));
    assert!(
        reply.contains("gave up") && reply.contains("try again later"),
        "the reply says it gave up, and what the server last said: {reply}"
    );
    assert!(message["next_attempt_at"].is_null());
    assert!(peer.received().is_empty());
}

// ---------------------------------------------------------------------------
// Scheduling and cancelling.

#[tokio::test]
async fn a_scheduled_message_waits_for_its_time_then_goes_out() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let send_at = in_the_future(Duration::from_secs(2));
    let mut message = system_message(&["cliente@example.com"]);
    message["send_at"] = json!(send_at);
    let (status, body) = app.submit(&acme, message).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "scheduled");
    let id = body["id"].as_str().unwrap();
    let submitted = std::time::Instant::now();

    let waiting = app.message(&acme, id).await;
    assert_eq!(waiting["status"], "scheduled");
    assert!(attempts(&waiting).is_empty());
    assert!(peer.received().is_empty(), "nothing goes out before send_at");

    peer.next_message(WAIT).await;
    assert!(
        submitted.elapsed() >= Duration::from_millis(1500),
        "the message left {:?} after submission, before its time",
        submitted.elapsed()
    );
    let sent = app.wait_for_status(&acme, id, "sent", WAIT).await;
    let (at, due) = (instant(&sent["attempts"][0]["at"]), instant(&json!(send_at)));
    assert!(at >= due, "the attempt ({at}) was not before send_at ({due})");
}

#[tokio::test]
async fn a_cancelled_scheduled_message_is_never_delivered() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let mut cancelled = system_message(&["cancelado@example.com"]);
    cancelled["send_at"] = json!(in_the_future(Duration::from_secs(1)));
    let cancelled_id = app.send(&acme, cancelled).await;
    // A later message tells us when the cancelled one's time has passed.
    let mut witness = system_message(&["testemunha@example.com"]);
    witness["send_at"] = json!(in_the_future(Duration::from_millis(1500)));
    let witness_id = app.send(&acme, witness).await;

    let (status, body) = app
        .call(reqwest::Method::POST, &format!("/api/v1/messages/{cancelled_id}/cancel"), Some(&acme.key), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");

    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["testemunha@example.com"], "the first message out is the witness");
    app.wait_for_status(&acme, &witness_id, "sent", WAIT).await;
    let message = app.message(&acme, &cancelled_id).await;
    assert_eq!(message["status"], "cancelled");
    assert!(attempts(&message).is_empty(), "{message:#}");
    assert!(peer.received().is_empty(), "the cancelled message never reached the server");
}

// ---------------------------------------------------------------------------
// What recipients see.

#[tokio::test]
async fn bcc_recipients_get_the_message_but_never_appear_in_it() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let mut message = user_message(&["cliente@example.com"]);
    message["cc"] = json!(["copia@example.com"]);
    message["bcc"] = json!(["auditoria@example.com"]);
    let id = app.send(&acme, message).await;

    let received = peer.next_message(WAIT).await;
    let mut envelope = received.rcpt_tos.clone();
    envelope.sort();
    assert_eq!(envelope, ["auditoria@example.com", "cliente@example.com", "copia@example.com"]);
    assert!(received.header("Bcc").is_none(), "{}", head_of(&received));
    assert!(
        !received.text().contains("auditoria@example.com"),
        "the Bcc address is nowhere in the message:\n{}",
        received.text()
    );
    assert!(received.header("Cc").unwrap().contains("copia@example.com"));
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
}

#[tokio::test]
async fn send_as_others_on_behalf_keeps_the_user_in_from_and_names_the_default_sender() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, json!({"policy": {"send_as_others": "on_behalf"}})).await;

    let id = app.send(&acme, user_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert_eq!(received.header("From").unwrap(), "\"Ana Souza\" <ana@acme.example>", "{}", head_of(&received));
    assert_eq!(
        received.header("Sender").unwrap(),
        "\"Plataforma\" <noreply@plataforma.example>",
        "{}",
        head_of(&received)
    );
    assert!(received.header("Reply-To").is_none(), "{}", head_of(&received));
    assert_eq!(received.mail_from, "noreply@plataforma.example");
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
}

#[tokio::test]
async fn send_as_others_rewrite_sends_from_the_default_address_and_replies_go_to_the_user() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, json!({"policy": {"send_as_others": "rewrite"}})).await;

    let id = app.send(&acme, user_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert_eq!(
        received.header("From").unwrap(),
        "\"Ana Souza\" <noreply@plataforma.example>",
        "{}",
        head_of(&received)
    );
    assert_eq!(received.header("Reply-To").unwrap(), "\"Ana Souza\" <ana@acme.example>", "{}", head_of(&received));
    assert!(received.header("Sender").is_none(), "{}", head_of(&received));
    assert_eq!(received.mail_from, "noreply@plataforma.example");
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
}
