//! Delivery workers, retry policy and the per-destination circuit breaker.
//!
//! Each destination has its own workers (`forwarding.workers`), so a slow or dead region ties up
//! only its own. A worker claims a batch of due jobs (leased), delivers them concurrently, and
//! writes each result while it still holds the lease. It sleeps on the destination's `Notify`
//! (woken by `submit`) or the poll interval, whichever comes first.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Instrument as _;

use super::connector::Attempt;
use super::{now_ms, Destination, Forwarder};
use crate::store::{Claim, ClaimedJob, JobUpdate};

/// Largest error text kept in a job row.
const MAX_ERROR: usize = 1000;

/// A destination's circuit breaker (per instance).
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// Cooled down; one probe job is (or may be) under way.
    HalfOpen {
        probing: bool,
    },
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    /// How many jobs may be claimed now: `batch` when closed, one probe when half-open, none
    /// while open (or while the probe is out).
    pub fn permit(&self, batch: usize) -> usize {
        let Ok(mut s) = self.state.lock() else {
            return batch;
        };
        match *s {
            BreakerState::Closed { .. } => batch,
            BreakerState::Open { until } if Instant::now() >= until => {
                *s = BreakerState::HalfOpen { probing: true };
                1
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { probing: true } => 0,
            BreakerState::HalfOpen { probing: false } => {
                *s = BreakerState::HalfOpen { probing: true };
                1
            }
        }
    }

    /// The probe permitted found no job to send.
    pub fn probe_unused(&self) {
        if let Ok(mut s) = self.state.lock() {
            if *s == (BreakerState::HalfOpen { probing: true }) {
                *s = BreakerState::HalfOpen { probing: false };
            }
        }
    }

    /// The destination answered (delivered, or refused a message for good: it is up).
    pub fn success(&self) {
        if let Ok(mut s) = self.state.lock() {
            *s = BreakerState::Closed { failures: 0 };
        }
    }

    /// The destination failed (timeout, 5xx, 429, unreachable).
    pub fn failure(&self) {
        if let Ok(mut s) = self.state.lock() {
            let open = BreakerState::Open {
                until: Instant::now() + self.cooldown,
            };
            *s = match *s {
                BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                    BreakerState::Closed {
                        failures: failures + 1,
                    }
                }
                BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => open,
                BreakerState::Open { until } => BreakerState::Open { until },
            };
        }
    }

    /// 0 closed, 1 open, 2 half-open (the `sektorbro_forward_breaker_state` gauge).
    pub fn gauge(&self) -> u8 {
        match self.state.lock().map(|s| *s) {
            Ok(BreakerState::Open { .. }) => 1,
            Ok(BreakerState::HalfOpen { .. }) => 2,
            _ => 0,
        }
    }

    /// How long until a probe may go, if open.
    fn open_for(&self) -> Option<Duration> {
        match self.state.lock().map(|s| *s) {
            Ok(BreakerState::Open { until }) => {
                Some(until.saturating_duration_since(Instant::now()))
            }
            _ => None,
        }
    }
}

/// The delay before attempt `attempts + 1`: full jitter over an exponential ceiling, and at
/// least what the receiver asked for with `Retry-After`.
pub fn backoff(
    base_ms: u64,
    max_ms: u64,
    attempts: i64,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 40) - 1).unwrap_or(39);
    let ceiling = base_ms.saturating_mul(1u64 << exp.min(40)).min(max_ms);
    let jittered = Duration::from_millis(fastrand::u64(0..=ceiling));
    match retry_after {
        Some(r) => r.max(jittered),
        None => jittered,
    }
}

/// One worker of one destination, until the forwarder stops.
pub(super) async fn run(fw: Arc<Forwarder>, dest: Arc<Destination>, n: usize) {
    let owner = format!("{}/{}/{n}", fw.instance, dest.config.id);
    let poll = Duration::from_millis(fw.config.poll_interval_ms);
    while !fw.stopping.load(Ordering::SeqCst) {
        let limit = dest.breaker.permit(fw.config.batch_size);
        if limit == 0 {
            let wait = dest.breaker.open_for().unwrap_or(poll).min(poll);
            fw.sleep(&dest, wait).await;
            continue;
        }
        let jobs = match claim(&fw, &dest, &owner, limit).await {
            Ok(jobs) => jobs,
            Err(e) => {
                dest.breaker.probe_unused();
                tracing::warn!(destination = %dest.config.id, error = %e, "cannot claim outbox jobs; will try again");
                fw.sleep(&dest, poll).await;
                continue;
            }
        };
        if jobs.is_empty() {
            dest.breaker.probe_unused();
            fw.sleep(&dest, poll).await;
            continue;
        }
        let attempts = jobs.into_iter().map(|job| {
            let span = tracing::debug_span!(
                "forwarding",
                forwarding.destination = %dest.config.id,
                forwarding.message_id = %job.message_id,
                forwarding.attempt = job.attempts,
                forwarding.outcome = tracing::field::Empty,
                otel.kind = "client",
            );
            attempt(&fw, &dest, &owner, job).instrument(span)
        });
        futures_util::future::join_all(attempts).await;
    }
}

async fn claim(
    fw: &Forwarder,
    dest: &Destination,
    owner: &str,
    limit: usize,
) -> Result<Vec<ClaimedJob>, crate::store::StoreError> {
    let now = now_ms();
    let lease = i64::try_from(fw.config.lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut tx = fw.store().begin().await?;
    let jobs = tx
        .claim_jobs(&Claim {
            owner,
            destination: &dest.config.id,
            limit,
            now_ms: now,
            lease_until_ms: now.saturating_add(lease),
        })
        .await?;
    tx.commit().await?;
    Ok(jobs)
}

/// Deliver one claimed job and record what happened.
async fn attempt(fw: &Forwarder, dest: &Destination, owner: &str, job: ClaimedJob) {
    let id = &dest.config.id;
    let started = now_ms();
    let result = dest.connector.deliver(&job.message_id, &job.payload).await;
    let now = now_ms();
    let owner = owner.to_string();
    let update = match result {
        Attempt::Delivered { status } => {
            dest.breaker.success();
            fw.stats.attempt(id, "delivered");
            fw.stats.delivered(
                id,
                Duration::from_millis(u64::try_from(now - job.created_at).unwrap_or(0)),
            );
            tracing::info!(destination = %id, message_id = %job.message_id, status, attempts = job.attempts, "message delivered");
            JobUpdate::Delivered {
                id: job.id,
                owner,
                now_ms: now,
                http_status: i64::from(status),
            }
        }
        Attempt::Permanent {
            status,
            error,
            body,
        } => {
            dest.breaker.success();
            fw.stats.attempt(id, "rejected");
            fw.stats.dead(id);
            tracing::warn!(destination = %id, message_id = %job.message_id, status, error = %error, "message refused by the receiver; dead letter");
            JobUpdate::Dead {
                id: job.id,
                owner,
                now_ms: now,
                http_status: Some(i64::from(status)),
                error: clip(format!("refused by the receiver: {error}")),
                receiver_outcome: body,
            }
        }
        Attempt::Transient {
            status,
            error,
            retry_after,
        } => {
            dest.breaker.failure();
            fw.stats.attempt(id, "failed");
            let c = &fw.config;
            let delay = backoff(
                c.backoff_base_ms,
                c.backoff_max_ms,
                job.attempts,
                retry_after,
            );
            let next = now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            let max_age = i64::try_from(c.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let give_up = if job.attempts >= c.max_attempts {
                Some(format!("gave up after {} attempts", job.attempts))
            } else if next.saturating_sub(job.created_at) > max_age {
                Some(format!(
                    "gave up: the message would be older than {} s at its next attempt",
                    c.max_age_secs
                ))
            } else {
                None
            };
            let http_status = status.map(i64::from);
            match give_up {
                Some(why) => {
                    fw.stats.dead(id);
                    tracing::warn!(destination = %id, message_id = %job.message_id, error = %error, "{why}; dead letter");
                    JobUpdate::Dead {
                        id: job.id,
                        owner,
                        now_ms: now,
                        http_status,
                        error: clip(format!("{why}; last error: {error}")),
                        receiver_outcome: None,
                    }
                }
                None => {
                    tracing::info!(destination = %id, message_id = %job.message_id, error = %error, attempts = job.attempts, retry_in_ms = delay.as_millis() as u64, took_ms = now - started, "delivery failed; will retry");
                    JobUpdate::Retry {
                        id: job.id,
                        owner,
                        now_ms: now,
                        next_attempt_at: next,
                        http_status,
                        error: clip(error),
                    }
                }
            }
        }
    };
    let outcome = match &update {
        JobUpdate::Delivered { .. } => "delivered",
        JobUpdate::Dead { .. } => "dead letter",
        JobUpdate::Retry { .. } => "retry",
        _ => "released",
    };
    tracing::Span::current().record("forwarding.outcome", outcome);
    if let Err(e) = record(fw, &update).await {
        // The lease expires and the job is attempted again: at least once, never lost.
        tracing::error!(destination = %id, message_id = %job.message_id, error = %e, "cannot record a delivery attempt; the job will be attempted again");
    }
    if let Some(auditor) = fw.auditor.get() {
        if let Some(r) = audit_record(dest, &job, &update) {
            auditor.record_detached(r).await;
        }
    }
}

/// The audit record of one delivery attempt (`None` for a released lease: no attempt was made).
fn audit_record(
    dest: &Destination,
    job: &ClaimedJob,
    update: &JobUpdate,
) -> Option<crate::audit::AuditRecord> {
    use crate::audit::{AuditRecord, ForwardAttempt, ForwardResult, PatientRef};
    let (result, status, error) = match update {
        JobUpdate::Delivered { http_status, .. } => {
            (ForwardResult::Delivered, Some(*http_status), None)
        }
        JobUpdate::Retry {
            http_status, error, ..
        } => (ForwardResult::Retry, *http_status, Some(error.clone())),
        JobUpdate::Dead {
            http_status, error, ..
        } => (ForwardResult::DeadLetter, *http_status, Some(error.clone())),
        JobUpdate::Release { .. } => return None,
    };
    let attempt = ForwardAttempt {
        message_id: job.message_id.clone(),
        destination: dest.config.id.clone(),
        url: format!(
            "{}/$process-message",
            dest.config.base_url.trim_end_matches('/')
        ),
        attempt: job.attempts,
        result,
    };
    let mut r = AuditRecord::forward(attempt, status.and_then(|s| u16::try_from(s).ok()));
    r.failure = error;
    r.patient = citizen(job).and_then(|c| {
        let (system, value) = c.split_once('|')?;
        Some(PatientRef::Identifier {
            system: system.to_string(),
            value: value.to_string(),
        })
    });
    Some(r)
}

/// The citizen's person identifier (`system|value`, as the message carries it, not a fullUrl):
/// kept since submit, or for a message queued before it was kept, read from the payload.
fn citizen(job: &ClaimedJob) -> Option<String> {
    job.citizen.clone().or_else(|| {
        serde_json::from_str::<serde_json::Value>(&job.payload)
            .ok()
            .and_then(|b| super::message::facts(&b).ok())
            .and_then(|f| f.citizen)
    })
}

async fn record(fw: &Forwarder, update: &JobUpdate) -> Result<(), crate::store::StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let result = async {
            let mut tx = fw.store().begin().await?;
            tx.update_job(update).await?;
            tx.commit().await
        }
        .await;
        match result {
            Err(e) if e.is_retryable() && tries < 5 => {
                tokio::time::sleep(Duration::from_millis(20 << tries)).await;
            }
            other => return other,
        }
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The citizen kept since submit is used as it is (the payload is not read: here it names
    /// nobody); a message queued before it was kept gets it from its payload.
    #[test]
    fn the_citizen_is_kept_from_submit_or_read_from_an_older_payload() {
        let job = |citizen: Option<&str>, payload: &str| ClaimedJob {
            id: 1,
            message_id: "m1".into(),
            payload: payload.into(),
            citizen: citizen.map(str::to_string),
            attempts: 1,
            created_at: 0,
        };
        assert_eq!(
            citizen(&job(Some("urn:oid:1.2.208.176.1.2|0101011234"), "{}")).as_deref(),
            Some("urn:oid:1.2.208.176.1.2|0101011234")
        );
        let older = serde_json::json!({"resourceType": "Bundle", "id": "m1", "type": "message", "entry": [
            {"fullUrl": "urn:uuid:h", "resource": {"resourceType": "MessageHeader",
                "destination": [{"endpoint": "x", "receiver": {"identifier": {"system": "urn:oid:1.2.208.176.1.1", "value": "123"}}}]}},
            {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [
                {"system": "urn:oid:1.2.208.176.1.2", "value": "0202021234"}]}}]});
        assert_eq!(
            citizen(&job(None, &older.to_string())).as_deref(),
            Some("urn:oid:1.2.208.176.1.2|0202021234")
        );
        assert_eq!(citizen(&job(None, "not json")), None);
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_ceiling_and_honours_retry_after() {
        for attempts in 1..=20 {
            let ceiling = (100u64 << (attempts - 1).min(40)).min(5_000);
            for _ in 0..50 {
                let d = backoff(100, 5_000, attempts, None);
                assert!(d <= Duration::from_millis(ceiling), "{attempts}: {d:?}");
            }
        }
        let d = backoff(100, 5_000, 1, Some(Duration::from_secs(3)));
        assert!(d >= Duration::from_secs(3));
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(3, Duration::from_millis(30));
        b.failure();
        b.failure();
        assert_eq!(b.permit(8), 8);
        b.success();
        b.failure();
        b.failure();
        assert_eq!(b.gauge(), 0, "successes reset the count");
        b.failure();
        assert_eq!(b.gauge(), 1);
        assert_eq!(b.permit(8), 0);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.permit(8), 1, "one probe after the cool-down");
        assert_eq!(b.permit(8), 0, "only one");
        b.failure();
        assert_eq!(b.gauge(), 1, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.permit(8), 1);
        b.success();
        assert_eq!(b.permit(8), 8);
    }
}
