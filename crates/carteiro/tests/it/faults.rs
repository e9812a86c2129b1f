//! Upstream faults, injected by Postfix's smtp-sink: a soft (`-r`) or hard
//! (`-f`) refusal at each command, a disconnection without a word (`-q`) or
//! after a 421 (`-Q`), a server too slow to answer DATA (`-w`). Every fault
//! ends in the right status with an attempt that keeps what the server said;
//! a temporary one is delivered once the server is healthy again, and a fault
//! before the server accepted the message never makes a second copy.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::app::system_message;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

/// A fault, the flags that make smtp-sink commit it, and what carteiro must make of it.
struct Fault {
    flags: &'static [&'static str],
    /// `deferred` (tried again) or `failed` (given up at once).
    status: &'static str,
    /// The reply code the first attempt may keep; none when the server said nothing.
    codes: &'static [Option<i64>],
}

const fn fault(flags: &'static [&'static str], status: &'static str, codes: &'static [Option<i64>]) -> Fault {
    Fault { flags, status, codes }
}

const FAULTS: &[Fault] = &[
    fault(&["-r", "CONNECT"], "deferred", &[Some(450)]),
    fault(&["-r", "EHLO"], "deferred", &[Some(450)]),
    fault(&["-r", "MAIL"], "deferred", &[Some(450)]),
    fault(&["-r", "RCPT"], "deferred", &[Some(450)]),
    fault(&["-r", "DATA"], "deferred", &[Some(450)]),
    fault(&["-r", "."], "deferred", &[Some(450)]),
    // A server that will not talk at all (5xx to the greeting or to EHLO) refuses no message
    // in particular: it is skipped for now, as Postfix does (smtp_skip_5xx_greeting).
    fault(&["-f", "CONNECT"], "deferred", &[Some(500)]),
    fault(&["-f", "EHLO"], "deferred", &[Some(500)]),
    fault(&["-f", "MAIL"], "failed", &[Some(500)]),
    fault(&["-f", "RCPT"], "failed", &[Some(500)]),
    fault(&["-f", "DATA"], "failed", &[Some(500)]),
    fault(&["-f", "."], "failed", &[Some(500)]),
    fault(&["-q", "CONNECT"], "deferred", &[None]),
    fault(&["-q", "EHLO"], "deferred", &[None]),
    fault(&["-q", "MAIL"], "deferred", &[None]),
    fault(&["-q", "RCPT"], "deferred", &[None]),
    fault(&["-q", "DATA"], "deferred", &[None]),
    fault(&["-q", "."], "deferred", &[None]),
    fault(&["-Q", "EHLO"], "deferred", &[Some(421)]),
    // With the envelope pipelined, the server closes with RCPT and DATA unread: the reset may
    // reach carteiro before its 421 does.
    fault(&["-Q", "MAIL"], "deferred", &[Some(421), None]),
    fault(&["-Q", "RCPT"], "deferred", &[Some(421), None]),
    fault(&["-Q", "DATA"], "deferred", &[Some(421)]),
    fault(&["-Q", "."], "deferred", &[Some(421)]),
    // DATA answered after 12 s; carteiro waits 10 s (the shortest timeout there is).
    fault(&["-w", "12"], "deferred", &[None]),
];

/// One company per fault, each on its own faulty sink, so that every fault runs at once.
struct Case {
    fault: &'static Fault,
    company: Company,
    sink: SmtpSink,
    message: String,
}

impl Case {
    fn name(&self) -> String {
        self.fault.flags.join(" ")
    }
}

/// Waits until the message has had an attempt; what it reads then.
async fn tried(app: &Carteiro, case: &Case) -> Value {
    let path = format!("/api/v1/messages/{}", case.message);
    let path = path.as_str();
    eventually(WAIT, &format!("{}: an attempt", case.name()), || async move {
        let (_, read) = app.call(Method::GET, path, Some(&case.company.key), None).await;
        read["attempts"].as_array().is_some_and(|a| !a.is_empty()).then_some(read)
    })
    .await
}

#[tokio::test]
async fn every_upstream_fault_ends_in_the_right_status_and_a_temporary_one_is_delivered_once_later() {
    let app = Carteiro::start().await;
    let mut cases = Vec::new();
    for (n, fault) in FAULTS.iter().enumerate() {
        let sink = SmtpSink::start_with(fault.flags).await;
        let company = app.create_company(&format!("fault{n}")).await;
        app.set_company_settings(
            &company,
            json!({
                "connection": {"enabled": true, "host": "127.0.0.1", "port": sink.port, "timeout_s": 10},
                "policy": {"default_sender_enabled": true, "default_sender_address": format!("noreply@fault{n}.example")}
            }),
        )
        .await;
        let message = app.send(&company, system_message(&["cliente@example.com"])).await;
        cases.push(Case { fault, company, sink, message });
    }

    let mut temporary = Vec::new();
    let mut wrong = Vec::new();
    for case in cases {
        let read = tried(&app, &case).await;
        let first = &read["attempts"][0];
        let reply = first["reply"].as_str().unwrap_or_default();
        if first["outcome"] != case.fault.status
            || !case.fault.codes.contains(&first["code"].as_i64())
            || reply.is_empty()
        {
            wrong.push(format!("{}: {} {} {reply:?}", case.name(), first["outcome"], first["code"]));
        }
        if case.fault.status == "failed" {
            if read["status"] != "failed" {
                wrong.push(format!("{}: the message is {}, not failed", case.name(), read["status"]));
            }
        } else {
            temporary.push(case);
        }
    }
    assert!(wrong.is_empty(), "faults with another outcome, code or no reply than expected:\n{}", wrong.join("\n"));

    // The servers recover: each faulty sink gives way to a healthy one on the same port.
    let mut healthy = Vec::new();
    for case in temporary {
        let port = case.sink.port;
        case.sink.stop().await;
        healthy.push((SmtpSink::start_on(port, &[]).await, case.company, case.message, case.fault));
    }
    for (_, company, message, _) in &healthy {
        let read = app.wait_for_status(company, message, "sent", WAIT).await;
        assert_eq!(read["attempts"].as_array().unwrap().last().unwrap()["code"], 250, "{read:#}");
    }
    // A second copy would come from a retry after the 250: give it the time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (sink, _, _, fault) in &healthy {
        assert_eq!(sink.count(), 1, "{}: the recovered server got the message exactly once", fault.flags.join(" "));
    }
}
