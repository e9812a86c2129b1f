//! Group commit: concurrent writers share one transaction, so that one disk
//! sync serves many callers. Each caller hears back only after the commit
//! that holds its items: a submission's 202 still follows its own durability,
//! and a delivery attempt is recorded before its message is let go.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{AttemptResult, Inserted, NewMessageRecord, Store, StoreError, StoreResult};

/// A write that can take many callers' items in one transaction.
#[async_trait]
pub trait GroupWrite: Clone + Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Outcome: Send + 'static;
    async fn write(&self, items: &[Self::Item]) -> StoreResult<Vec<Self::Outcome>>;
    /// An item's share of a transaction's size limit (bytes, say).
    fn weight(item: &Self::Item) -> usize;
}

/// Stores submitted messages.
#[derive(Clone)]
pub struct InsertMessages(pub Arc<dyn Store>);

#[async_trait]
impl GroupWrite for InsertMessages {
    type Item = NewMessageRecord;
    type Outcome = Inserted;
    async fn write(&self, items: &[NewMessageRecord]) -> StoreResult<Vec<Inserted>> {
        self.0.insert_messages(items).await
    }
    fn weight(item: &NewMessageRecord) -> usize {
        item.raw.len()
    }
}

/// Records delivery attempts.
#[derive(Clone)]
pub struct FinishAttempts(pub Arc<dyn Store>);

#[async_trait]
impl GroupWrite for FinishAttempts {
    type Item = AttemptResult;
    type Outcome = bool;
    async fn write(&self, items: &[AttemptResult]) -> StoreResult<Vec<bool>> {
        self.0.finish_attempts(items).await
    }
    fn weight(item: &AttemptResult) -> usize {
        item.attempt.reply.len() + 256
    }
}

/// Marks claimed messages as being sent (each item: the message and the claim holding it).
#[derive(Clone)]
pub struct StartSending(pub Arc<dyn Store>);

#[async_trait]
impl GroupWrite for StartSending {
    type Item = (String, String);
    type Outcome = bool;
    async fn write(&self, items: &[(String, String)]) -> StoreResult<Vec<bool>> {
        let started: std::collections::HashSet<(String, String)> =
            self.0.start_sending(items, crate::state::now_ms()).await?.into_iter().collect();
        Ok(items.iter().map(|item| started.contains(item)).collect())
    }
    fn weight(_: &(String, String)) -> usize {
        64
    }
}

/// Most items, and most weight, in one transaction.
const MAX_GROUP: usize = 2000;
const MAX_GROUP_WEIGHT: usize = 64 * 1024 * 1024;

type Job<W> = (Vec<<W as GroupWrite>::Item>, oneshot::Sender<StoreResult<Vec<<W as GroupWrite>::Outcome>>>);

pub struct Grouped<W: GroupWrite> {
    jobs: mpsc::Sender<Job<W>>,
}

impl<W: GroupWrite> Clone for Grouped<W> {
    fn clone(&self) -> Self {
        Self { jobs: self.jobs.clone() }
    }
}

impl<W: GroupWrite> Grouped<W> {
    pub fn start(writer: W) -> Self {
        let (jobs, queue) = mpsc::channel(1024);
        tokio::spawn(run(writer, queue));
        Self { jobs }
    }

    /// Writes the items in one transaction (possibly shared with other
    /// callers'), answering once that transaction is committed.
    pub async fn write(&self, items: Vec<W::Item>) -> StoreResult<Vec<W::Outcome>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("carteiro is stopping".to_owned());
        self.jobs.send((items, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<W: GroupWrite>(writer: W, mut queue: mpsc::Receiver<Job<W>>) {
    while let Some(first) = queue.recv().await {
        let weight = |job: &Job<W>| job.0.iter().map(W::weight).sum::<usize>();
        let (mut count, mut total) = (first.0.len(), weight(&first));
        let mut group = vec![first];
        while count < MAX_GROUP && total < MAX_GROUP_WEIGHT {
            let Ok(job) = queue.try_recv() else { break };
            count += job.0.len();
            total += weight(&job);
            group.push(job);
        }
        commit(&writer, group).await;
    }
}

async fn commit<W: GroupWrite>(writer: &W, group: Vec<Job<W>>) {
    let mut all = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    for (items, reply) in group {
        replies.push((items.len(), reply));
        all.extend(items);
    }
    // A panic fails this group, not every later write.
    let attempt = AssertUnwindSafe(writer.write(&all)).catch_unwind().await;
    let result = match attempt {
        Ok(done) => done,
        Err(_) => {
            tracing::error!("a grouped write panicked");
            for (_, reply) in replies {
                let _ = reply.send(Err(StoreError::Other(anyhow::anyhow!("the write failed"))));
            }
            return;
        }
    };
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (count, reply) in replies {
                let _ = reply.send(Ok(outcomes.by_ref().take(count).collect()));
            }
        }
        // One caller's failure must not become the others': write each alone.
        Err(error) if replies.len() == 1 => {
            let _ = replies.pop().expect("one caller").1.send(Err(error));
        }
        Err(_) => {
            let mut start = 0;
            for (count, reply) in replies {
                let _ = reply.send(writer.write(&all[start..start + count]).await);
                start += count;
            }
        }
    }
}
