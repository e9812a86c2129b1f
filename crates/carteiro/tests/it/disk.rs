//! A full disk: carteiro refuses new messages with 503 and a sentence that
//! says so, keeps every message it accepted before, and takes new ones again
//! once space returns. The data directory is a small tmpfs of its own.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::app::system_message;
use crate::helpers::store::on_postgres;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) {
        std::fs::create_dir_all(path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root: run the suite as root, as the test command does");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the disk of `dir` up to its last byte with one file; its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

/// A message with an attachment of about 100 KB: a full disk is reached in a few.
fn heavy(n: usize, send_at: &str) -> Value {
    let mut message = system_message(&["cliente@example.com"]);
    message["subject"] = json!(format!("Relatório {n}"));
    message["send_at"] = json!(send_at);
    message["attachments"] = json!([{"filename": "relatorio.bin", "content_type": "application/octet-stream", "content_base64": B64.encode(vec![n as u8; 75_000])}]);
    message
}

/// How many messages the company has; reading works on a full disk.
async fn count_messages(app: &Carteiro, company: &Company) -> usize {
    app.messages(company, "limit=1000").await.len()
}

#[tokio::test]
async fn a_full_disk_refuses_new_messages_with_503_keeps_the_accepted_ones_and_recovers() {
    if on_postgres() {
        // The database is on the PostgreSQL server's disk, not in the data directory.
        return;
    }
    let sink = SmtpSink::start().await;
    let mut mounted = None;
    let mut app = Carteiro::start_prepared(Database::Own, &[], &[], |data| {
        Tmpfs::mount(data, "24m");
        mounted = Some(Tmpfs(data.to_owned()));
    })
    .await;
    app.use_server(sink.port).await;
    let acme = app.create_company("acme").await;
    // Due a little later, so that they wait in the queue while the disk is full.
    let due = (OffsetDateTime::now_utc() + Duration::from_secs(6)).format(&Rfc3339).unwrap();
    let mut accepted = Vec::new();
    for n in 0..5 {
        accepted.push(app.send(&acme, heavy(n, &due)).await);
    }

    let filler = fill(&app.data_dir());
    let refusal = loop {
        let (status, body) = app.submit(&acme, heavy(accepted.len(), &due)).await;
        match status {
            StatusCode::ACCEPTED => accepted.push(body["id"].as_str().unwrap().to_owned()),
            _ => break (status, body),
        }
        assert!(accepted.len() < 300, "the disk never filled up");
    };

    let (status, body) = refusal;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("disk is full"), "a clear sentence: {body}");
    let queued = count_messages(&app, &acme).await;
    assert_eq!(queued, accepted.len(), "the refused message was not queued, and no accepted one was lost");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/messages/batch",
            Some(&acme.key),
            Some(json!({"messages": [heavy(900, &due), heavy(901, &due)]})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}\n{}", app.logs());
    assert_eq!(count_messages(&app, &acme).await, queued, "nothing of the refused batch was queued");
    assert!(app.logs().contains("disk is full"), "the log says why");

    // While the disk is full the queued messages fall due; then space returns.
    tokio::time::sleep(Duration::from_secs(7)).await;
    std::fs::remove_file(filler).unwrap();
    let later = eventually(WAIT, "a submission to be accepted again", || async {
        let (status, body) = app.submit(&acme, system_message(&["cliente@example.com"])).await;
        (status == StatusCode::ACCEPTED).then(|| body["id"].as_str().unwrap().to_owned())
    })
    .await;
    accepted.push(later);
    for id in &accepted {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
    assert!(sink.count() >= accepted.len(), "every accepted message reached the server");
    app.kill().await;
    drop(mounted);
}
