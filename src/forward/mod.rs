//! Forwarding of FHIR messages (discharge messages) to regional systems: never lost, never sent
//! to the wrong region, delivered at least once with a stable id, in order per citizen.
//!
//! - [`Forwarder::submit`] routes a message Bundle by its receiver, and writes it with its
//!   delivery job (and optionally a transaction Bundle of other resources) in one database
//!   transaction: the durable outbox (`store/outbox.rs`).
//! - `worker.rs`: per-destination workers claim jobs with leases, deliver, retry with backoff,
//!   dead-letter, and keep a circuit breaker per destination.
//! - `connector.rs`: the HTTP side of the destination kinds (`fhir-message`, `cosmic-link`,
//!   `medcom`).
//! - `message.rs`: the message id, receiver and citizen read from a Bundle (pure).
//!
//! This room sends HTTP and calls the engine; it holds no SQL and serves no HTTP.

pub mod connector;
pub mod message;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::config::{DestinationConfig, ForwardingConfig};
use crate::engine::{Access, Engine, Transaction, WriteOp};
use crate::error::FhirError;
use crate::lookup::Identifier;
use crate::lookup::Lookups;
use crate::metrics::{
    encode_family, ConstGauge, Counter, DescriptorEncoder, Family, Histogram, MetricType,
};
use crate::store::{DeadAction, Grant, Job, JobStatus, NewJob, Storage};
use fhir_core::fhir::outcome::Issue;
use fhir_core::fhir::ResourceType;
use prometheus_client::encoding::EncodeLabelSet;

pub use connector::Attempt;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What [`Forwarder::submit`] did with a message.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The destination id the receiver is routed to.
    pub destination: String,
    pub message_id: String,
    /// The job's status now (`Pending` for a new message).
    pub status: JobStatus,
    /// False when the message id was already known: nothing was written.
    pub created: bool,
    /// The transaction-response Bundle (JSON text) of the `store` Bundle, when one was written.
    pub stored: Option<String>,
}

/// A destination as the console shows it ([`Forwarder::overview`]).
#[derive(Debug, Clone)]
pub struct DestinationState {
    pub id: String,
    /// 0 closed, 1 open, 2 half-open (this instance's breaker).
    pub breaker: u8,
    /// Jobs by status.
    pub jobs: Vec<(JobStatus, i64)>,
}

/// One configured destination and its delivery state on this instance.
pub struct Destination {
    pub config: DestinationConfig,
    connector: connector::Connector,
    breaker: worker::Breaker,
    /// Wakes this destination's idle workers.
    wake: Notify,
}

/// Forwarding: routing, the outbox, workers. One per process, shared (`AppState::forwarder`).
pub struct Forwarder {
    engine: Arc<Engine>,
    config: ForwardingConfig,
    destinations: Vec<Arc<Destination>>,
    /// Receiver `system|value` → index in `destinations`.
    routes: HashMap<String, usize>,
    /// Names this instance's leases (`lease_owner`).
    instance: String,
    stopping: AtomicBool,
    stats: Stats,
    /// Where each delivery attempt is audited (set once, by [`Forwarder::with_auditor`]).
    auditor: std::sync::OnceLock<crate::audit::Auditor>,
}

impl Forwarder {
    /// Build the connectors (reading TLS files) for `config`'s destinations.
    pub fn new(
        engine: Arc<Engine>,
        config: &ForwardingConfig,
        lookups: Arc<Lookups>,
    ) -> anyhow::Result<Arc<Forwarder>> {
        let mut destinations = Vec::new();
        let mut routes = HashMap::new();
        for (i, d) in config.destinations.iter().enumerate() {
            for r in &d.receivers {
                routes.insert(r.clone(), i);
            }
            destinations.push(Arc::new(Destination {
                connector: connector::Connector::new(d, lookups.clone())?,
                breaker: worker::Breaker::new(
                    config.breaker_failures,
                    Duration::from_secs(config.breaker_cooldown_secs),
                ),
                wake: Notify::new(),
                config: d.clone(),
            }));
        }
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        Ok(Arc::new(Forwarder {
            engine,
            config: config.clone(),
            destinations,
            routes,
            instance: format!(
                "{host}{}{}",
                if host.is_empty() { "" } else { ":" },
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            stopping: AtomicBool::new(false),
            stats: Stats::default(),
            auditor: std::sync::OnceLock::new(),
        }))
    }

    /// Audit every delivery attempt (delivered, retry, dead letter) through `auditor`. Call
    /// before [`Forwarder::start`]; a second call changes nothing.
    pub fn with_auditor(self: Arc<Self>, auditor: crate::audit::Auditor) -> Arc<Self> {
        let _ = self.auditor.set(auditor);
        self
    }

    /// Start the delivery workers (if `forwarding.enabled`).
    pub fn start(self: &Arc<Self>) {
        if !self.config.enabled {
            return;
        }
        for d in &self.destinations {
            for n in 0..self.config.workers {
                tokio::spawn(worker::run(self.clone(), d.clone(), n));
            }
        }
        if !self.destinations.is_empty() {
            tracing::info!(
                destinations = self.destinations.len(),
                workers = self.config.workers,
                instance = %self.instance,
                "forwarding workers started"
            );
        }
    }

    /// At start on SQLite, where this process is the database file's only user: jobs a previous
    /// run left in flight (it crashed or was killed mid-delivery) are delivered again now instead
    /// of after their lease expires, which would also hold back those citizens' later messages.
    /// On PostgreSQL other instances may hold those leases, so they expire as usual.
    pub async fn release_orphaned_leases(&self) -> Result<(), FhirError> {
        let mut tx = self.engine.store().begin().await?;
        tx.release_all_leases(now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stop claiming jobs. Jobs under way finish their attempt; a job whose result is not
    /// recorded is attempted again once its lease expires.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for d in &self.destinations {
            d.wake.notify_waiters();
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Storage> {
        self.engine.store()
    }

    async fn sleep(&self, dest: &Destination, wait: Duration) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        tokio::select! {
            _ = dest.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Accept a FHIR message Bundle for delivery.
    ///
    /// The message is validated (as every write: `[validation]`), routed by
    /// `MessageHeader.destination[0].receiver.identifier` to the destination serving that
    /// receiver (422 naming the configured receivers if none does), and written with its job in
    /// one database transaction, together with `store` (other resources written in the same
    /// transaction, or `None`). Idempotent on `Bundle.id` per sender (the caller's organization): the sender's
    /// own known message id writes nothing and answers the existing job's status; another
    /// sender's message with the same id is neither seen nor in the way.
    pub async fn submit(
        &self,
        access: &Access,
        message: Value,
        store: Option<Transaction>,
        base: &str,
    ) -> Result<Submitted, FhirError> {
        access.permit("Bundle", crate::auth::Permission::Create)?;
        let facts = message::facts(&message)?;
        let dest_index = self.resolve(&facts.receiver).await?;
        let destination = &self.destinations[dest_index].config.id;
        let sender = access.owner().unwrap_or_default().to_string();
        if let Some(existing) = self
            .engine
            .store()
            .outbox_job(&facts.message_id, Some(&sender))
            .await?
        {
            return Ok(Submitted {
                destination: existing.destination,
                message_id: existing.message_id,
                status: existing.status,
                created: false,
                stored: None,
            });
        }
        self.engine
            .validate_op(
                &WriteOp::Create {
                    rtype: ResourceType::BUNDLE,
                    resource: message.clone(),
                    if_none_exist: None,
                },
                &crate::store::Visibility::All,
            )
            .await?;
        let payload = serde_json::to_string(&message)
            .map_err(|e| FhirError::internal(format!("cannot serialize the message: {e}")))?;
        let job = NewJob {
            sender,
            message_id: facts.message_id.clone(),
            destination: destination.clone(),
            ordering_key: message::ordering_key(destination, &facts),
            payload,
            citizen: facts.citizen.clone(),
            now_ms: now_ms(),
        };
        // Sending a citizen's message to a receiver lets the receiver read what the sender
        // holds about that citizen (tenancy: ARCHITECTURE.md).
        let grants: Vec<Grant> = match (access.owner(), &facts.patient_id) {
            (Some(owner), Some(citizen)) => vec![Grant {
                grantee: facts.receiver.clone(),
                owner: owner.to_string(),
                citizen: citizen.clone(),
                reason: format!("message {}", facts.message_id),
            }],
            _ => Vec::new(),
        };
        let stored = match store {
            Some(entries) => Some(
                self.engine
                    .transaction_with_job(access, entries, base, &job, &grants)
                    .await
                    .map_err(|e| within(e, "store"))?,
            ),
            None => {
                self.engine.enqueue(&job, &grants).await?;
                None
            }
        };
        self.stats.submitted.inc();
        self.destinations[dest_index].wake.notify_waiters();
        // A concurrent submit of the same id may have won: answer what is stored.
        let (status, created) = match self
            .engine
            .store()
            .outbox_job(&job.message_id, Some(&job.sender))
            .await?
        {
            Some(j) => (j.status, j.created_at == job.now_ms),
            None => (JobStatus::Pending, true),
        };
        tracing::info!(destination = %destination, message_id = %job.message_id, "message accepted for forwarding");
        Ok(Submitted {
            destination: destination.clone(),
            message_id: job.message_id,
            status,
            created,
            stored,
        })
    }

    /// Accept a MedCom HospitalNotification already validated by `medcom::receive`: route it
    /// like any message, and write its hospital event and its delivery job in one database
    /// transaction. Idempotent per sender: the caller answers a repeat (same sender, same
    /// `Bundle.id`) from the stored event before calling this; the outbox keys jobs by sender
    /// (the caller's organization) and message id, as for [`Forwarder::submit`].
    pub async fn submit_event(
        &self,
        access: &Access,
        message: &Value,
        event: &crate::store::HospitalEvent,
    ) -> Result<Submitted, FhirError> {
        access.permit("Bundle", crate::auth::Permission::Create)?;
        let facts = message::facts(message)?;
        let dest_index = self.resolve(&facts.receiver).await?;
        let destination = self.destinations[dest_index].config.id.clone();
        let sender = access.owner().unwrap_or_default().to_string();
        if let Some(existing) = self
            .engine
            .store()
            .outbox_job(&facts.message_id, Some(&sender))
            .await?
        {
            return Err(FhirError::conflict(format!(
                "message id {} is already used by another message (to {}); a sender's message ids must be unique",
                existing.message_id, existing.destination
            ))
            .at("Bundle.id"));
        }
        let payload = serde_json::to_string(message)
            .map_err(|e| FhirError::internal(format!("cannot serialize the message: {e}")))?;
        let job = NewJob {
            message_id: facts.message_id.clone(),
            destination: destination.clone(),
            ordering_key: message::ordering_key(&destination, &facts),
            payload,
            citizen: facts.citizen.clone(),
            now_ms: now_ms(),
            sender,
        };
        crate::engine::retrying(|_| async {
            let mut tx = self.engine.store().begin().await?;
            tx.record_hospital_event(event).await?;
            tx.enqueue(&job).await?;
            crate::audit::in_tx::commit(tx, None, None, 202).await?;
            Ok(())
        })
        .await?;
        self.stats.submitted.inc();
        self.destinations[dest_index].wake.notify_waiters();
        tracing::info!(destination = %destination, message_id = %job.message_id, "MedCom message accepted for forwarding");
        Ok(Submitted {
            destination,
            message_id: job.message_id,
            status: JobStatus::Pending,
            created: true,
            stored: None,
        })
    }

    /// The destination serving `receiver` (`system|value`) and the URL messages are posted to;
    /// 422 when none does (see [`Forwarder::resolve`]).
    pub async fn route(&self, receiver: &str) -> Result<(&DestinationConfig, String), FhirError> {
        let d = &self.destinations[self.resolve(receiver).await?].config;
        Ok((
            d,
            format!("{}/$process-message", d.base_url.trim_end_matches('/')),
        ))
    }

    /// Which destination serves `receiver`: one that lists it in `receivers`; else, where an
    /// organization registry is configured (`[lookups.organizations]`), one that lists the
    /// organization it is part of (its region or hospital, by an identifier of the parent the
    /// registry includes), or one whose `base_url` is the organization's active FHIR-messaging
    /// endpoint. A receiver the registry does not know, or knows but nobody serves, is a 422;
    /// a registry that cannot answer, a 502/503.
    pub async fn resolve(&self, receiver: &str) -> Result<usize, FhirError> {
        if let Some(&i) = self.routes.get(receiver) {
            return Ok(i);
        }
        let Some((system, value)) = receiver.split_once('|') else {
            return Err(self.unknown_receiver(receiver));
        };
        let id = match Identifier::new(system, value) {
            Ok(id) => id,
            Err(_) => return Err(self.unknown_receiver(receiver)),
        };
        let org = match self.engine.lookups().organization_by_identifier(&id).await {
            Ok(found) => found.value,
            Err(crate::lookup::LookupError::NotConfigured(_)) => {
                return Err(self.unknown_receiver(receiver))
            }
            Err(e) => return Err(e.into()),
        };
        let Some(org) = org else {
            return Err(FhirError::new(
                422,
                vec![Issue::error(
                    "not-found",
                    format!(
                        "receiver {receiver} is not known to the organization registry, and no destination lists it"
                    ),
                )
                .at("Bundle.entry[0].resource.destination[0].receiver.identifier")],
            ));
        };
        let parents: Vec<String> = org
            .part_of
            .as_ref()
            .and_then(|p| p.resource.as_ref())
            .and_then(|r| r.get("identifier"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| {
                Some(format!(
                    "{}|{}",
                    i.get("system")?.as_str()?,
                    i.get("value")?.as_str()?
                ))
            })
            .collect();
        if let Some(&i) = parents.iter().find_map(|p| self.routes.get(p)) {
            return Ok(i);
        }
        if let Some(ep) = org.active_endpoint("hl7-fhir-msg") {
            let base = |u: &str| {
                u.trim_end_matches('/')
                    .trim_end_matches("/$process-message")
                    .to_string()
            };
            let wanted = base(&ep.address);
            if let Some(i) = self
                .destinations
                .iter()
                .position(|d| base(&d.config.base_url) == wanted)
            {
                return Ok(i);
            }
        }
        let name = org
            .resource
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("(no name)");
        Err(FhirError::new(
            422,
            vec![Issue::error(
                "not-found",
                format!(
                    "receiver {receiver} ({name}) is known to the organization registry, but no destination serves it, the organizations it is part of ({}) or its messaging endpoint",
                    if parents.is_empty() { "none given".to_string() } else { parents.join(", ") }
                ),
            )
            .at("Bundle.entry[0].resource.destination[0].receiver.identifier")],
        ))
    }

    fn unknown_receiver(&self, receiver: &str) -> FhirError {
        let mut known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        known.sort_unstable();
        let list = if known.is_empty() {
            "none (no [[forwarding.destinations]] are configured)".to_string()
        } else {
            known.join(", ")
        };
        FhirError::new(
            422,
            vec![Issue::error(
                "not-found",
                format!("no destination serves receiver {receiver}; configured receivers: {list}"),
            )
            .at("Bundle.entry[0].resource.destination[0].receiver.identifier")],
        )
    }

    /// A job by message id (and sender, where several senders used the id; else the oldest),
    /// with the message id of the job holding it back, if any.
    pub async fn job(
        &self,
        message_id: &str,
        sender: Option<&str>,
    ) -> Result<(Job, Option<String>), FhirError> {
        let Some(job) = self.store().outbox_job(message_id, sender).await? else {
            return Err(FhirError::not_found(format!(
                "no message {message_id:?} in the outbox"
            )));
        };
        let blocked_by = match job.status {
            JobStatus::Pending => self.store().outbox_blocker(&job).await?,
            _ => None,
        };
        Ok((job, blocked_by))
    }

    /// Jobs by status, oldest first, paged by job id.
    pub async fn jobs(
        &self,
        status: Option<JobStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<Job>, FhirError> {
        Ok(self.store().outbox_jobs(status, after_id, limit).await?)
    }

    /// Retry or discard a dead letter (409 if the message is not a dead letter).
    pub async fn act_on_dead(
        &self,
        message_id: &str,
        sender: Option<&str>,
        action: DeadAction,
    ) -> Result<Job, FhirError> {
        let (job, _) = self.job(message_id, sender).await?;
        let mut tx = self.store().begin().await?;
        let done = tx.act_on_dead(job.id, action, now_ms()).await?;
        tx.commit().await?;
        if !done {
            return Err(FhirError::conflict(format!(
                "message {message_id} is {}, not a dead letter",
                job.status.as_str()
            )));
        }
        if let Some(d) = self
            .destinations
            .iter()
            .find(|d| d.config.id == job.destination)
        {
            d.wake.notify_waiters();
        }
        Ok(self.job(message_id, Some(&job.sender)).await?.0)
    }

    /// Each configured destination (in configuration order) with its circuit breaker on this
    /// instance (0 closed, 1 open, 2 half-open) and its outbox jobs by status, counted in the
    /// database (so every instance shows the same counts): the console's Outbox page.
    pub async fn overview(&self) -> Result<Vec<DestinationState>, FhirError> {
        let counts = self.store().outbox_counts().await?;
        let mut out: Vec<DestinationState> = self
            .destinations
            .iter()
            .map(|d| DestinationState {
                id: d.config.id.clone(),
                breaker: d.breaker.gauge(),
                jobs: Vec::new(),
            })
            .collect();
        for (destination, status, n) in counts {
            match out.iter_mut().find(|d| d.id == destination) {
                Some(d) => d.jobs.push((status, n)),
                // Jobs of a destination no longer configured.
                None => out.push(DestinationState {
                    id: destination,
                    breaker: 0,
                    jobs: vec![(status, n)],
                }),
            }
        }
        Ok(out)
    }

    /// Registers the forwarding series: the counters and the delivery histogram, and a collector
    /// of the outbox jobs (as last counted by [`Forwarder::count_outbox_jobs`]) and the circuit
    /// breakers.
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        // The registry adds the final full stop to a help text.
        registry.register(
            "sektorbro_forward_submitted",
            "Messages accepted for forwarding",
            self.stats.submitted.clone(),
        );
        registry.register(
            "sektorbro_forward_attempts",
            "Delivery attempts by destination and outcome (delivered, failed, rejected)",
            self.stats.attempts.clone(),
        );
        registry.register(
            "sektorbro_forward_dead",
            "Messages that became dead letters",
            self.stats.dead.clone(),
        );
        registry.register(
            "sektorbro_forward_delivery_seconds",
            "Time from accepting a message to its delivery",
            self.stats.latency.clone(),
        );
        registry.register_collector(Box::new(Gauges {
            outbox: self.stats.outbox.clone(),
            destinations: self.destinations.clone(),
        }));
    }

    /// Count the outbox's jobs by destination and status for the next render of `/metrics` (the
    /// database is asked at each scrape, so every instance sharing it shows the same figures).
    /// When the database cannot answer, the jobs are left out of `/metrics`.
    pub async fn count_outbox_jobs(&self) {
        let counts = match self.store().outbox_counts().await {
            Ok(mut counts) => {
                counts.sort();
                counts
                    .into_iter()
                    .map(|(d, s, n)| (d, s.as_str(), n))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count outbox jobs for /metrics");
                Vec::new()
            }
        };
        if let Ok(mut outbox) = self.stats.outbox.lock() {
            *outbox = counts;
        }
    }
}

/// Put `part` in front of the issues' locations (errors of the `store` Bundle).
fn within(e: FhirError, part: &str) -> FhirError {
    let issues = e
        .issues
        .into_iter()
        .map(|mut i| {
            i.expression = Some(match i.expression.take() {
                Some(x) => format!("{part}: {x}"),
                None => part.to_string(),
            });
            i
        })
        .collect();
    FhirError::new(e.status, issues)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    destination: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabel {
    destination: String,
}

/// Outbox jobs as last counted: (destination, status, jobs).
type OutboxCounts = Arc<Mutex<Vec<(String, &'static str, i64)>>>;

/// Forwarding counters of this instance; the handles are the registered series.
struct Stats {
    submitted: Counter,
    attempts: Family<AttemptLabels, Counter>,
    dead: Family<DestinationLabel, Counter>,
    latency: Family<DestinationLabel, Histogram, fn() -> Histogram>,
    outbox: OutboxCounts,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            submitted: Counter::default(),
            attempts: Family::default(),
            dead: Family::default(),
            latency: Family::new_with_constructor(crate::metrics::histogram),
            outbox: OutboxCounts::default(),
        }
    }
}

impl Stats {
    fn attempt(&self, destination: &str, outcome: &'static str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                destination: destination.to_string(),
                outcome,
            })
            .inc();
    }

    fn dead(&self, destination: &str) {
        self.dead
            .get_or_create(&DestinationLabel {
                destination: destination.to_string(),
            })
            .inc();
    }

    fn delivered(&self, destination: &str, since_submit: Duration) {
        self.latency
            .get_or_create(&DestinationLabel {
                destination: destination.to_string(),
            })
            .observe(since_submit.as_secs_f64());
    }
}

/// The gauges read at each scrape: outbox jobs and circuit breakers.
struct Gauges {
    outbox: OutboxCounts,
    destinations: Vec<Arc<Destination>>,
}

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("forward::Gauges")
    }
}

impl crate::metrics::Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let outbox = self.outbox.lock().map(|o| o.clone()).unwrap_or_default();
        encode_family(
            &mut encoder,
            "sektorbro_outbox_jobs",
            "Outbox jobs by destination and status.",
            MetricType::Gauge,
            outbox.iter().map(|(d, s, n)| {
                (
                    [("destination", d.as_str()), ("status", *s)],
                    ConstGauge::new(*n),
                )
            }),
        )?;
        encode_family(
            &mut encoder,
            "sektorbro_forward_breaker_state",
            "Circuit breaker per destination: 0 closed, 1 open, 2 half-open.",
            MetricType::Gauge,
            self.destinations.iter().map(|d| {
                (
                    [("destination", d.config.id.as_str())],
                    ConstGauge::new(i64::from(d.breaker.gauge())),
                )
            }),
        )
    }
}
