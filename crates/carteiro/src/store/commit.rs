//! Group commit: concurrent submissions share one transaction, so that one
//! disk sync serves many callers. Each caller still hears back only after the
//! commit that holds its messages, so every 202 follows its own durability.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Inserted, NewMessageRecord, Store, StoreError, StoreResult};

/// Most messages, and most bytes of them, stored in one transaction.
const MAX_GROUP: usize = 2000;
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

type Job = (
    Vec<NewMessageRecord>,
    oneshot::Sender<StoreResult<Vec<Inserted>>>,
);

#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (jobs, queue) = mpsc::channel(1024);
        tokio::spawn(run(store, queue));
        Self { jobs }
    }

    /// Stores the records in one transaction (possibly shared with other
    /// callers'), answering once that transaction is committed.
    pub async fn insert(&self, records: Vec<NewMessageRecord>) -> StoreResult<Vec<Inserted>> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("carteiro is stopping".to_owned());
        self.jobs
            .send((records, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Job>) {
    while let Some(first) = queue.recv().await {
        let bytes = |job: &Job| job.0.iter().map(|r| r.raw.len()).sum::<usize>();
        let (mut count, mut size) = (first.0.len(), bytes(&first));
        let mut group = vec![first];
        while count < MAX_GROUP && size < MAX_GROUP_BYTES {
            let Ok(job) = queue.try_recv() else { break };
            count += job.0.len();
            size += bytes(&job);
            group.push(job);
        }
        commit(&store, group).await;
    }
}

async fn commit(store: &Arc<dyn Store>, group: Vec<Job>) {
    let mut all = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    for (records, reply) in group {
        replies.push((records.len(), reply));
        all.extend(records);
    }
    // In a task of its own: a panic fails this group, not every later submission.
    let attempt = tokio::spawn({
        let store = store.clone();
        async move {
            let result = store.insert_messages(&all).await;
            (all, result)
        }
    })
    .await;
    let (all, result) = match attempt {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(error = %e, "storing submissions failed");
            for (_, reply) in replies {
                let _ = reply.send(Err(StoreError::Other(anyhow::anyhow!(
                    "storing the messages failed"
                ))));
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
        // One caller's failure must not become the others': commit each alone.
        Err(error) if replies.len() == 1 => {
            let _ = replies.pop().expect("one caller").1.send(Err(error));
        }
        Err(_) => {
            let mut start = 0;
            for (count, reply) in replies {
                let _ = reply.send(store.insert_messages(&all[start..start + count]).await);
                start += count;
            }
        }
    }
}
