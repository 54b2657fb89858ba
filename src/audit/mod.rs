//! Audit (issues #7, #19): a record of every read, search, write, delete, validation, refusal and
//! forwarding attempt, stored as a compact row (`audit_log`) in the gateway's own database and
//! rendered as an IHE BALP AuditEvent when read (`/fhir/AuditEvent`, `sektorbro audit export`).
//!
//! - [`AuditRecord`]: a plain description of one attempt (who, what, when, from where, which
//!   citizen, outcome). No FHIR in it.
//! - [`compact`]: the record as a row of short, bounded columns, and the hash chain's hash.
//! - [`to_audit_event`] (`event.rs`): the record as an R4 AuditEvent in the style of IHE BALP.
//! - [`in_tx`]: a write's record, committed in the write's own transaction.
//! - [`Auditor`] (`writer.rs`): everything else (reads, searches, refusals, forwarding), written
//!   with group commit before the recorder goes on; the sealer (hash chain) and retention.
//!
//! **What is never lost.** A write's record commits with the write, so no write is acknowledged
//! without it. Any other request's record is committed before its response leaves, so a process
//! crash after the response loses nothing; it reaches the disk within `audit.max_unsynced_ms`
//! (the window at risk on power loss; 0: before the response). A record the database refuses
//! makes the request fail (503) instead of leaving without its record. Nothing is dropped for a full queue: recorders wait for room (backpressure, counted in
//! `sektorbro_audit_backpressure_total` and logged).
//!
//! **Tamper evidence.** The sealer chains new rows (`hash` = SHA-256 over the previous hash and
//! the row), every `audit.seal_interval_ms`; `sektorbro audit verify` walks the chain. Retention
//! (`audit.retention_days`) deletes a prefix of the chain and anchors the rest.

pub mod compact;
mod event;
pub mod in_tx;
mod journal;
mod writer;

/// What reading the trail waits for: every record appended to the journal before is copied
/// into the database (`Engine` holds one, weakly, when the journal is on).
#[derive(Debug, Clone)]
pub struct Settle(std::sync::Weak<journal::Journal>);

impl Settle {
    pub async fn settle(&self) {
        if let Some(journal) = self.0.upgrade() {
            journal.settle().await;
        }
    }
}

pub use event::{to_audit_event, SEKTORBRO_AUDIT_SYSTEM};

static OBSERVER: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

/// This gateway's name in rendered AuditEvents (`source.observer`, `source.site`), set when the
/// [`Auditor`] starts; "sektorbro" before that.
pub fn observer() -> String {
    match OBSERVER.read() {
        Ok(o) if !o.is_empty() => o.clone(),
        _ => "sektorbro".to_string(),
    }
}

pub(crate) fn set_observer(name: &str) {
    if let Ok(mut o) = OBSERVER.write() {
        *o = name.to_string();
    }
}
pub use writer::{prune, AuditStats, Auditor, Recorded};

/// The kind of interaction an [`AuditRecord`] describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    // FHIR RESTful interactions (http://hl7.org/fhir/restful-interaction).
    Read,
    Vread,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    SearchType,
    SearchSystem,
    Create,
    Update,
    Patch,
    Delete,
    Transaction,
    Batch,
    Capabilities,
    /// A FHIR operation, by its name without `$`: `validate`, `process-message`.
    Operation(String),
    // Not FHIR REST: the municipal endpoints.
    /// `POST /municipal/v1/care-records`
    CareRecordPost,
    /// `GET /municipal/v1/care-records/{id}`
    CareRecordGet,
    /// `POST /municipal/v1/discharge-notes`
    DischargeNotePost,
    /// One delivery attempt of a forwarded message to its destination.
    Forward,
}

impl Interaction {
    /// The code of a FHIR RESTful interaction (`http://hl7.org/fhir/restful-interaction`), or
    /// `None` for the kinds that are not FHIR REST.
    pub fn restful_code(&self) -> Option<&'static str> {
        Some(match self {
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::SearchType => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::Create => "create",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::Transaction => "transaction",
            Interaction::Batch => "batch",
            Interaction::Capabilities => "capabilities",
            Interaction::Operation(_) => "operation",
            Interaction::CareRecordPost
            | Interaction::CareRecordGet
            | Interaction::DischargeNotePost
            | Interaction::Forward => return None,
        })
    }

    /// The code in [`SEKTORBRO_AUDIT_SYSTEM`] for what `restful-interaction` cannot say: the
    /// municipal endpoints, forwarding, and the name of an operation.
    pub fn own_code(&self) -> Option<&str> {
        match self {
            Interaction::CareRecordPost => Some("care-record-post"),
            Interaction::CareRecordGet => Some("care-record-get"),
            Interaction::DischargeNotePost => Some("discharge-note-post"),
            Interaction::Forward => Some("forward"),
            Interaction::Operation(name) => Some(name.as_str()),
            _ => None,
        }
    }

    /// The action an interaction usually is (BALP: searches and operations are Execute).
    pub fn default_action(&self) -> Action {
        match self {
            Interaction::Read
            | Interaction::Vread
            | Interaction::HistoryInstance
            | Interaction::HistoryType
            | Interaction::HistorySystem
            | Interaction::Capabilities
            | Interaction::CareRecordGet => Action::Read,
            Interaction::Create | Interaction::CareRecordPost => Action::Create,
            Interaction::Update | Interaction::Patch => Action::Update,
            Interaction::Delete => Action::Delete,
            // DICOM/IHE Export: the data is read out to the receiver.
            Interaction::Forward => Action::Read,
            Interaction::SearchType
            | Interaction::SearchSystem
            | Interaction::Transaction
            | Interaction::Batch
            | Interaction::Operation(_)
            | Interaction::DischargeNotePost => Action::Execute,
        }
    }
}

/// `AuditEvent.action` (http://hl7.org/fhir/audit-event-action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// `AuditEvent.outcome` (http://hl7.org/fhir/audit-event-outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: success (2xx, 3xx; a delivered message).
    Success,
    /// 4: minor failure — the request was refused (4xx); a delivery that will be retried.
    MinorFailure,
    /// 8: serious failure — the server failed (5xx); a message that became a dead letter.
    SeriousFailure,
    /// 12: major failure — the gateway could not carry on at all.
    MajorFailure,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
            Outcome::MajorFailure => "12",
        }
    }

    /// The outcome an HTTP status stands for.
    pub fn from_status(status: u16) -> Outcome {
        match status {
            0..=399 => Outcome::Success,
            400..=499 => Outcome::MinorFailure,
            _ => Outcome::SeriousFailure,
        }
    }
}

/// The authenticated client that made a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Who {
    /// The client's id as authentication established it (OAuth `client_id`, certificate subject).
    pub client_id: String,
    /// A human-readable name, if known.
    pub name: Option<String>,
    /// What kind of client, e.g. `municipality`, `region`, `gp`, `admin`, `system`.
    pub kind: Option<String>,
    /// How it authenticated, e.g. `mtls`, `bearer`, `loopback`.
    pub auth_method: Option<String>,
    /// Organizations it acts for: `system|value` identifiers (SOR, HSA-id, municipality code) or
    /// literal references (`Organization/id`).
    pub organizations: Vec<String>,
    /// A literal reference to a resource describing the client (`Device/x`, `Organization/y`),
    /// if the gateway holds one; makes `AuditEvent?agent=` find the client's events.
    pub reference: Option<String>,
}

/// The patient an attempt concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientRef {
    /// `Patient/id` (searchable with `AuditEvent?patient=`).
    Reference(String),
    /// A person identifier (CPR, personnummer) when no stored Patient is known.
    Identifier { system: String, value: String },
}

/// One delivery attempt of a forwarded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAttempt {
    /// `Bundle.id` of the message.
    pub message_id: String,
    /// The destination's configured id.
    pub destination: String,
    /// Where the message was posted.
    pub url: String,
    /// Which attempt this was (1 for the first).
    pub attempt: i64,
    pub result: ForwardResult,
}

/// What became of a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardResult {
    Delivered,
    /// Failed for now; the job is attempted again later.
    Retry,
    /// Given up on or refused for good: a dead letter.
    DeadLetter,
}

impl ForwardResult {
    pub fn outcome(self) -> Outcome {
        match self {
            ForwardResult::Delivered => Outcome::Success,
            ForwardResult::Retry => Outcome::MinorFailure,
            ForwardResult::DeadLetter => Outcome::SeriousFailure,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ForwardResult::Delivered => "delivered",
            ForwardResult::Retry => "retry",
            ForwardResult::DeadLetter => "dead letter",
        }
    }
}

/// One attempt to be audited. Plain data: the middleware and the forwarding worker fill it,
/// [`to_audit_event`] turns it into FHIR. Never put request or response bodies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the attempt happened, milliseconds since the Unix epoch.
    pub recorded_ms: i64,
    pub interaction: Interaction,
    pub action: Action,
    pub outcome: Outcome,
    /// The HTTP status answered (REST) or received from the destination (forwarding).
    pub http_status: Option<u16>,
    /// The authenticated client; `None` for a request that was not (or could not be)
    /// authenticated, and for forwarding (the gateway itself acts).
    pub who: Option<Who>,
    /// The peer's network address (IP, without port).
    pub peer: Option<String>,
    /// The resource type the interaction was on (`Patient` for `GET /fhir/Patient?…`).
    pub resource_type: Option<String>,
    /// The resource acted on: `Type/id` or `Type/id/_history/v`.
    pub resource: Option<String>,
    /// The raw query string of a search (or of any request that carried one), without `?`, at
    /// most `audit.max_query_bytes` of it (see [`AuditRecord::set_query`]).
    pub query: Option<String>,
    /// The whole query string's length in bytes, when `query` holds only its start.
    pub query_truncated_from: Option<usize>,
    /// The patient concerned, when known.
    pub patient: Option<PatientRef>,
    /// The delivery attempt, for [`Interaction::Forward`].
    pub forward: Option<ForwardAttempt>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// A short description of a failure (the first issue of the OperationOutcome, the error of
    /// a delivery). Not a body.
    pub failure: Option<String>,
}

impl AuditRecord {
    /// A record of `interaction` answered with `status`, now; action and outcome follow from
    /// them, everything else is empty.
    pub fn new(interaction: Interaction, status: u16) -> AuditRecord {
        AuditRecord {
            recorded_ms: chrono::Utc::now().timestamp_millis(),
            action: interaction.default_action(),
            interaction,
            outcome: Outcome::from_status(status),
            http_status: Some(status),
            who: None,
            peer: None,
            resource_type: None,
            resource: None,
            query: None,
            query_truncated_from: None,
            patient: None,
            forward: None,
            request_id: None,
            failure: None,
        }
    }

    /// Keep `query` (without `?`), cut to its first `max_bytes` bytes (at a character boundary)
    /// when longer; an empty query is none.
    pub fn set_query(&mut self, query: &str, max_bytes: usize) {
        if query.is_empty() {
            return;
        }
        if query.len() <= max_bytes {
            self.query = Some(query.to_string());
            return;
        }
        let mut end = max_bytes;
        while !query.is_char_boundary(end) {
            end -= 1;
        }
        self.query = Some(query[..end].to_string());
        self.query_truncated_from = Some(query.len());
    }

    /// A record of one delivery attempt, now; `status` is the destination's answer, if any.
    pub fn forward(attempt: ForwardAttempt, status: Option<u16>) -> AuditRecord {
        AuditRecord {
            outcome: attempt.result.outcome(),
            http_status: status,
            resource_type: Some("Bundle".into()),
            forward: Some(attempt),
            ..AuditRecord::new(Interaction::Forward, 200)
        }
    }
}
