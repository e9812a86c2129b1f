//! The story of a session as an administrator reads it: each step, timed,
//! with what happened. Delivery attempts and Test connection tell the same one.

use std::time::{Duration, Instant};

use carteiro_core::delivery::{Failure, Stage};
use serde::Serialize;
use utoipa::ToSchema;

/// One step of a session as an administrator reads it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Step {
    pub step: &'static str,
    pub ok: bool,
    pub ms: u64,
    pub detail: String,
}

/// The steps of a session, in order.
#[derive(Debug, Default)]
pub struct Transcript {
    pub steps: Vec<Step>,
}

impl Transcript {
    pub fn record<T>(
        &mut self,
        stage: Stage,
        started: Instant,
        result: &Result<T, Failure>,
        detail: impl FnOnce(&T) -> String,
    ) {
        let (ok, detail) = match result {
            Ok(value) => (true, detail(value)),
            Err(failure) => (false, failure.to_string()),
        };
        self.steps.push(Step { step: stage.as_str(), ok, ms: started.elapsed().as_millis() as u64, detail });
    }
}

/// Runs `work` within `limit`, a timeout at `stage` otherwise.
pub async fn within<T>(
    limit: Duration,
    stage: Stage,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(limit, work).await.unwrap_or(Err(Failure::Timeout { stage }))
}
