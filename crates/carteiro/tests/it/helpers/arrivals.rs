//! What reached a peer, counted by subject: messages delivered, and delivered twice.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::app::{Carteiro, Company, system_message};
use super::peers::{PeerMessage, SmtpPeer};

/// What reached a peer, by subject: how many times each arrived, and under which Message-IDs.
#[derive(Default)]
pub struct Arrivals {
    times: HashMap<String, usize>,
    pub message_ids: HashSet<String>,
}

impl Arrivals {
    pub fn record(&mut self, message: PeerMessage) {
        *self.times.entry(message.header("Subject").expect("a Subject header")).or_default() += 1;
        self.message_ids.insert(message.header("Message-ID").expect("a Message-ID header"));
    }

    /// Takes in whatever the peer has reported so far, without waiting.
    pub fn take(&mut self, peer: &mut SmtpPeer) {
        for message in peer.received() {
            self.record(message);
        }
    }

    /// Waits for the peer's next message (and anything behind it), up to `limit`.
    pub async fn take_next(&mut self, peer: &mut SmtpPeer, limit: Duration) {
        let message = peer.next_message(limit).await;
        self.record(message);
        self.take(peer);
    }

    /// Waits until at least `count` distinct messages have arrived.
    pub async fn wait_for(&mut self, peer: &mut SmtpPeer, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        self.take(peer);
        while self.distinct() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.take_next(peer, Duration::from_secs(3600))).await;
            assert!(next.is_ok(), "only {} of {count} messages reached the server within {limit:?}", self.distinct());
        }
    }

    pub fn distinct(&self) -> usize {
        self.times.len()
    }

    pub fn total(&self) -> usize {
        self.times.values().sum()
    }

    pub fn duplicates(&self) -> usize {
        self.total() - self.distinct()
    }

    pub fn has(&self, subject: &str) -> bool {
        self.times.contains_key(subject)
    }
}

/// `count` system messages with the subjects `{prefix} 000`, `{prefix} 001`, …
pub fn numbered_messages(prefix: &str, count: usize) -> Vec<(String, Value)> {
    (0..count)
        .map(|i| {
            let subject = format!("{prefix} {i:03}");
            let mut message = system_message(&[&format!("cliente{i}@example.com")]);
            message["subject"] = json!(subject);
            (subject, message)
        })
        .collect()
}

/// Submits the messages in one batch; each one's id, by subject.
pub async fn submit_batch(app: &Carteiro, company: &Company, messages: &[(String, Value)]) -> HashMap<String, String> {
    let batch = json!({"messages": messages.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()});
    let (status, body) = app.call(Method::POST, "/api/v1/messages/batch", Some(&company.key), Some(batch)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let results = body["results"].as_array().expect("one result per message");
    assert_eq!(results.len(), messages.len());
    messages
        .iter()
        .zip(results)
        .map(|((subject, _), result)| {
            (
                subject.clone(),
                result["id"].as_str().unwrap_or_else(|| panic!("{subject} was refused: {result}")).to_owned(),
            )
        })
        .collect()
}
