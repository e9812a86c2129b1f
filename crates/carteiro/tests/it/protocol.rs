//! SMTP edge cases that only a server scripted in the test can stage: replies
//! lost in a pipelined group, a graceful stop in the middle of a bundle, a
//! transaction the server leaves open.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::app::system_message;
use crate::helpers::*;

/// Pipelining server. The first message gets 250 at its dot; the next MAIL
/// (pipelined right behind the dot) gets `after` and the connection closes
/// (or, with `after` empty, the server just stalls on it).
async fn server(after: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = record.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                let _ = write.write_all(b"220 s ESMTP\r\n").await;
                let mut rcpt = String::new();
                let mut armed = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-s\r\n250 PIPELINING\r\n",
                        "MAIL" => {
                            if armed {
                                if after.is_empty() {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                let _ = write.write_all(after.as_bytes()).await;
                                return;
                            }
                            b"250 ok\r\n"
                        }
                        "RCPT" => {
                            rcpt = line.clone();
                            b"250 ok\r\n"
                        }
                        "DATA" => {
                            let _ = write.write_all(b"354 go\r\n").await;
                            loop {
                                let mut body = String::new();
                                if reader.read_line(&mut body).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if body == ".\r\n" {
                                    break;
                                }
                            }
                            let first = {
                                let mut s = seen.lock().unwrap();
                                s.push(rcpt.trim().to_owned());
                                s.len() == 1
                            };
                            armed = first;
                            b"250 queued\r\n"
                        }
                        "RSET" | "NOOP" => b"250 ok\r\n",
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"502 no\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

async fn run(after: &'static str) {
    let (port, seen) = server(after).await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(
        &acme,
        json!({
        "connection": {"enabled": true, "host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 10},
        "policy": {"bundle_enabled": true, "bundle_interval_ms": 300}}),
    )
    .await;
    let messages: Vec<Value> = (1..=3).map(|i| system_message(&[&format!("r{i}@example.com")])).collect();
    let (status, body) =
        app.call(Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(json!({"messages": messages}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids: Vec<String> =
        body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    for id in &ids {
        let m = app.wait_for_status(&acme, id, "sent", Duration::from_secs(60)).await;
        eprintln!("{id}: {}", m["attempts"]);
    }
    let seen = seen.lock().unwrap().clone();
    eprintln!("server saw: {seen:?}");
    assert_eq!(seen.len(), 3, "each message reached the server once: {seen:?}");
}

#[tokio::test]
async fn a_421_to_the_next_pipelined_envelope_does_not_resend_the_message_just_accepted() {
    run("421 4.7.0 too many messages, closing\r\n").await;
}

#[tokio::test]
async fn a_server_stalling_on_the_next_pipelined_envelope_does_not_cause_a_resend() {
    run("").await;
}

/// Pipelining server that takes `delay` before answering each dot; every
/// recipient it accepted a message for, in order.
async fn slow_server(delay: Duration) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = record.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                let _ = write.write_all(b"220 s ESMTP\r\n").await;
                let mut rcpt = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-s\r\n250 PIPELINING\r\n",
                        "MAIL" => b"250 ok\r\n",
                        "RCPT" => {
                            rcpt = line.trim().to_owned();
                            b"250 ok\r\n"
                        }
                        "DATA" => {
                            let _ = write.write_all(b"354 go\r\n").await;
                            loop {
                                let mut body = String::new();
                                if reader.read_line(&mut body).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if body == ".\r\n" {
                                    break;
                                }
                            }
                            tokio::time::sleep(delay).await;
                            seen.lock().unwrap().push(rcpt.clone());
                            b"250 queued\r\n"
                        }
                        "RSET" | "NOOP" => b"250 ok\r\n",
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"502 no\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_graceful_stop_in_the_middle_of_a_bundle_sends_nothing_twice() {
    let (port, seen) = slow_server(Duration::from_millis(400)).await;
    let mut app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(
        &acme,
        json!({
        "connection": {"enabled": true, "host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 10},
        "policy": {"bundle_enabled": true, "bundle_interval_ms": 200}}),
    )
    .await;
    let messages: Vec<Value> = (1..=20).map(|i| system_message(&[&format!("r{i}@example.com")])).collect();
    let (status, body) =
        app.call(Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(json!({"messages": messages}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids: Vec<String> =
        body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    eventually(Duration::from_secs(20), "three messages to be accepted", || async {
        (seen.lock().unwrap().len() >= 3).then_some(())
    })
    .await;
    app.terminate().await;
    let before = seen.lock().unwrap().len();
    app.restart().await;
    for id in &ids {
        app.wait_for_status(&acme, id, "sent", Duration::from_secs(60)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    eprintln!("accepted before the restart: {before}; in all: {} ({} distinct)", seen.len(), unique.len());
    assert_eq!(seen.len(), unique.len(), "a graceful stop sent messages twice: {seen:?}");
}

/// No PIPELINING. The first DATA gets 451 (the transaction stays open, as
/// Postfix keeps it); MAIL inside an open transaction gets 503, as Postfix says.
async fn data_refusing_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let datas = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let seen = record.clone();
            let datas = datas.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                let _ = write.write_all(b"220 s ESMTP\r\n").await;
                let mut rcpt = String::new();
                let mut in_tx = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    seen.lock().unwrap().push(format!("C: {}", line.trim()));
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-s\r\n250 8BITMIME\r\n",
                        "MAIL" if in_tx => b"503 5.5.1 Error: nested MAIL command\r\n",
                        "MAIL" => {
                            in_tx = true;
                            b"250 ok\r\n"
                        }
                        "RCPT" => {
                            rcpt = line.trim().to_owned();
                            b"250 ok\r\n"
                        }
                        "DATA" => {
                            let n = {
                                let mut d = datas.lock().unwrap();
                                *d += 1;
                                *d
                            };
                            if n == 1 {
                                b"451 4.7.1 try again later\r\n"
                            } else {
                                let _ = write.write_all(b"354 go\r\n").await;
                                loop {
                                    let mut body = String::new();
                                    if reader.read_line(&mut body).await.unwrap_or(0) == 0 {
                                        return;
                                    }
                                    if body == ".\r\n" {
                                        break;
                                    }
                                }
                                in_tx = false;
                                seen.lock().unwrap().push(format!("DELIVERED {rcpt}"));
                                b"250 queued\r\n"
                            }
                        }
                        "RSET" => {
                            in_tx = false;
                            b"250 ok\r\n"
                        }
                        "NOOP" => b"250 ok\r\n",
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        }
                        _ => b"502 no\r\n",
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn a_refused_data_is_reset_so_the_next_message_in_the_session_goes_through() {
    let (port, seen) = data_refusing_server().await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(
        &acme,
        json!({
        "connection": {"enabled": true, "host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 10},
        "policy": {"bundle_enabled": true, "bundle_interval_ms": 300}}),
    )
    .await;
    let messages: Vec<Value> = (1..=2).map(|i| system_message(&[&format!("r{i}@example.com")])).collect();
    let (status, body) =
        app.call(Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(json!({"messages": messages}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids: Vec<String> =
        body["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    // The second message shares the session with the refused first one, and must not meet
    // "503 nested MAIL": after a refused DATA, the transaction is reset.
    let second = app.wait_for_status(&acme, &ids[1], "sent", Duration::from_secs(20)).await;
    assert_eq!(second["attempts"].as_array().unwrap().len(), 1, "{second:#}");
    app.wait_for_status(&acme, &ids[0], "sent", Duration::from_secs(20)).await;
    let seen = seen.lock().unwrap().clone();
    let delivered: Vec<&String> = seen.iter().filter(|line| line.starts_with("DELIVERED")).collect();
    assert_eq!(delivered.len(), 2, "each message delivered once: {seen:?}");
}
