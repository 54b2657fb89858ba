//! The compact stored form of an [`AuditRecord`] (table `audit_log`, migration 0006): a handful
//! of short columns instead of a full AuditEvent with its index rows. [`to_audit_event`] renders
//! a row back into an IHE BALP AuditEvent when it is read.
//!
//! Sizes are bounded here, whatever the caller filled in: every text column is cut at
//! [`MAX_TEXT_BYTES`] (the query at `audit.max_query_bytes`, cut by [`AuditRecord::set_query`]).
//!
//! The hash chain: a sealed row carries `hash = SHA-256(previous hash, "\n", content)`, cut to
//! 128 bits and written in base64url (22 characters), where content is [`Columns::canonical`]. The first row's previous
//! hash is [`GENESIS`] (or the anchor retention left, see `store::audit_log`).
//!
//! [`to_audit_event`]: super::to_audit_event

use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{
    Action, AuditRecord, ForwardAttempt, ForwardResult, Interaction, Outcome, PatientRef, Who,
};

/// Longest text kept in a column other than the query (client ids, references, failures).
pub const MAX_TEXT_BYTES: usize = 256;

/// The previous hash of the first record of a chain.
pub const GENESIS: &str = "00000000000000000000000000000000";

/// The columns of one `audit_log` row, in table order (without `seq`, `chain_pos`, `hash`).
/// A line of the audit journal is one of these as JSON, empty columns left out; when, what kind,
/// which action and the outcome are always written, and a line without them is not a record (a
/// stray JSON object must not become an empty row of the trail).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Columns {
    pub recorded_ms: i64,
    pub kind: String,
    pub action: String,
    pub outcome: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orgs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_len: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<String>,
}

/// The first `max` bytes of `s`, cut back to a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`prefix`] as a new string.
pub fn cut(s: &str, max: usize) -> String {
    prefix(s, max).to_string()
}

impl Interaction {
    /// The stored code: the restful-interaction code, `$name` for an operation, or our own code.
    pub fn stored_code(&self) -> String {
        match self {
            Interaction::Operation(name) => format!("${name}"),
            other => other
                .restful_code()
                .or_else(|| other.own_code())
                .unwrap_or("unknown")
                .to_string(),
        }
    }

    /// The interaction a stored code names (`None` for a code this version does not know).
    pub fn from_stored_code(code: &str) -> Option<Interaction> {
        use Interaction::*;
        if let Some(name) = code.strip_prefix('$') {
            return Some(Operation(name.to_string()));
        }
        Some(match code {
            "read" => Read,
            "vread" => Vread,
            "history-instance" => HistoryInstance,
            "history-type" => HistoryType,
            "history-system" => HistorySystem,
            "search-type" => SearchType,
            "search-system" => SearchSystem,
            "create" => Create,
            "update" => Update,
            "patch" => Patch,
            "delete" => Delete,
            "transaction" => Transaction,
            "batch" => Batch,
            "capabilities" => Capabilities,
            "care-record-post" => CareRecordPost,
            "care-record-get" => CareRecordGet,
            "discharge-note-post" => DischargeNotePost,
            "forward" => Forward,
            _ => return None,
        })
    }
}

impl Action {
    fn from_code(code: &str) -> Option<Action> {
        Some(match code {
            "C" => Action::Create,
            "R" => Action::Read,
            "U" => Action::Update,
            "D" => Action::Delete,
            "E" => Action::Execute,
            _ => return None,
        })
    }
}

impl Outcome {
    fn from_code(code: i64) -> Outcome {
        match code {
            0 => Outcome::Success,
            4 => Outcome::MinorFailure,
            8 => Outcome::SeriousFailure,
            _ => Outcome::MajorFailure,
        }
    }
}

impl ForwardResult {
    fn from_str(s: &str) -> ForwardResult {
        match s {
            "delivered" => ForwardResult::Delivered,
            "retry" => ForwardResult::Retry,
            _ => ForwardResult::DeadLetter,
        }
    }
}

/// `s` at most `max` bytes long, cut at a character boundary, in its own allocation.
fn cut_owned(mut s: String, max: usize) -> String {
    let end = prefix(&s, max).len();
    s.truncate(end);
    s
}

fn short_owned(s: Option<String>) -> Option<String> {
    s.map(|s| cut_owned(s, MAX_TEXT_BYTES))
}

/// The row of a record, every text bounded. The record's own texts become the row's (an audited
/// read builds its record and then its row on the request's path: copying each text twice was
/// a tenth of what the audit added to a worker's time per read).
impl From<AuditRecord> for Columns {
    fn from(r: AuditRecord) -> Columns {
        let (client, client_kind, auth, orgs) = match r.who {
            Some(w) => (
                Some(cut_owned(w.client_id, MAX_TEXT_BYTES)).filter(|c| !c.is_empty()),
                short_owned(w.kind),
                short_owned(w.auth_method),
                match w.organizations.len() {
                    0 => None,
                    1 => w.organizations.into_iter().next(),
                    _ => Some(w.organizations.join("\n")),
                }
                .map(|o| cut_owned(o, MAX_TEXT_BYTES * 4)),
            ),
            None => (None, None, None, None),
        };
        // The type is the entity's when there is one: kept once.
        let rtype = short_owned(r.resource_type).filter(|t| {
            r.resource
                .as_deref()
                .is_none_or(|e| e.split('/').next() != Some(t.as_str()))
        });
        Columns {
            recorded_ms: r.recorded_ms,
            kind: cut_owned(r.interaction.stored_code(), MAX_TEXT_BYTES),
            action: r.action.code().to_string(),
            outcome: r.outcome.code().parse().unwrap_or(12),
            status: r.http_status.map(i64::from),
            client,
            client_kind,
            auth,
            orgs,
            peer: short_owned(r.peer),
            rtype,
            entity: short_owned(r.resource),
            patient: r.patient.map(|p| {
                cut_owned(
                    match p {
                        PatientRef::Reference(s) => s,
                        PatientRef::Identifier { system, value } => format!("{system}|{value}"),
                    },
                    MAX_TEXT_BYTES,
                )
            }),
            query: r.query,
            query_len: r.query_truncated_from.map(|n| n as i64),
            request_id: short_owned(r.request_id),
            failure: short_owned(r.failure),
            forward: r.forward.map(|f| {
                json!([
                    cut(&f.message_id, MAX_TEXT_BYTES),
                    cut(&f.destination, MAX_TEXT_BYTES),
                    cut(&f.url, MAX_TEXT_BYTES * 4),
                    f.attempt,
                    f.result.as_str()
                ])
                .to_string()
            }),
        }
    }
}

impl Columns {
    /// The row of `r`, every text bounded (see [`Columns::from`], which takes the record's
    /// texts instead of copying them).
    pub fn of(r: &AuditRecord) -> Columns {
        Columns::from(r.clone())
    }

    /// The record a stored row describes (the observer is the renderer's).
    pub fn record(&self) -> AuditRecord {
        let interaction = Interaction::from_stored_code(&self.kind)
            .unwrap_or_else(|| Interaction::Operation(self.kind.clone()));
        let who = self.client.as_ref().map(|c| Who {
            client_id: c.clone(),
            name: None,
            kind: self.client_kind.clone(),
            auth_method: self.auth.clone(),
            organizations: self
                .orgs
                .as_deref()
                .map(|o| o.split('\n').map(str::to_string).collect())
                .unwrap_or_default(),
            reference: None,
        });
        let patient = self.patient.as_ref().map(|p| match p.split_once('|') {
            Some((system, value)) => PatientRef::Identifier {
                system: system.to_string(),
                value: value.to_string(),
            },
            None => PatientRef::Reference(p.clone()),
        });
        let forward = self.forward.as_deref().and_then(|f| {
            let v: Value = serde_json::from_str(f).ok()?;
            Some(ForwardAttempt {
                message_id: v[0].as_str()?.to_string(),
                destination: v[1].as_str()?.to_string(),
                url: v[2].as_str()?.to_string(),
                attempt: v[3].as_i64()?,
                result: ForwardResult::from_str(v[4].as_str()?),
            })
        });
        AuditRecord {
            recorded_ms: self.recorded_ms,
            action: Action::from_code(&self.action).unwrap_or(interaction.default_action()),
            interaction,
            outcome: Outcome::from_code(self.outcome),
            http_status: self.status.and_then(|s| u16::try_from(s).ok()),
            who,
            peer: self.peer.clone(),
            resource_type: self.rtype.clone().or_else(|| {
                self.entity
                    .as_deref()
                    .and_then(|e| e.split_once('/'))
                    .map(|(t, _)| t.to_string())
            }),
            resource: self.entity.clone(),
            query: self.query.clone(),
            query_truncated_from: self.query_len.and_then(|n| usize::try_from(n).ok()),
            patient,
            forward,
            request_id: self.request_id.clone(),
            failure: self.failure.clone(),
        }
    }

    /// The columns in table order (without `seq`, `chain_pos`, `hash`), each with its name and
    /// its value borrowed: the one list the journal line, the canonical text and the row's
    /// binds are written from (`store::audit_log`'s `TYPED_COLUMNS` names the same columns in
    /// the same order, a test holds them equal).
    pub fn values(&self) -> [(&'static str, ColumnValue<'_>); 18] {
        use ColumnValue::{Int, Text};
        fn text(v: &Option<String>) -> ColumnValue<'_> {
            Text(v.as_deref())
        }
        [
            ("recorded_ms", Int(Some(self.recorded_ms))),
            ("kind", Text(Some(&self.kind))),
            ("action", Text(Some(&self.action))),
            ("outcome", Int(Some(self.outcome))),
            ("status", Int(self.status)),
            ("client", text(&self.client)),
            ("client_kind", text(&self.client_kind)),
            ("auth", text(&self.auth)),
            ("orgs", text(&self.orgs)),
            ("peer", text(&self.peer)),
            ("rtype", text(&self.rtype)),
            ("entity", text(&self.entity)),
            ("patient", text(&self.patient)),
            ("query", text(&self.query)),
            ("query_len", Int(self.query_len)),
            ("request_id", text(&self.request_id)),
            ("failure", text(&self.failure)),
            ("forward", text(&self.forward)),
        ]
    }

    /// The row as a line of the audit journal: a JSON object of the columns, empty ones left
    /// out, byte for byte what serde_json writes for it (a test holds the two equal), without
    /// serde's per-field machinery: every audited request writes one on its worker.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        for (name, v) in self.values() {
            if v.is_null() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            v.write_json(out);
        }
        out.push(b'}');
    }

    /// The row's content as one unambiguous text (a JSON array of the columns in table order),
    /// which the hash chain covers. Written field by field, as `json!([...]).to_string()` would
    /// write it (a test holds the two equal) without building the `Value`: every audited request
    /// hashes one.
    pub fn canonical(&self, seq: i64) -> String {
        let mut out = Vec::with_capacity(512 + self.query.as_ref().map_or(0, String::len));
        self.canonical_into(seq, &mut out);
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Columns::canonical`] appended to `out`, as bytes.
    fn canonical_into(&self, seq: i64, out: &mut Vec<u8>) {
        canonical_values_into(seq, self.values().iter().map(|(_, v)| *v), out);
    }
}

/// The canonical text of a row given as its id and its values in [`Columns::values`] order.
fn canonical_values_into<'a>(
    seq: i64,
    values: impl Iterator<Item = ColumnValue<'a>>,
    out: &mut Vec<u8>,
) {
    out.push(b'[');
    ColumnValue::Int(Some(seq)).write_json(out);
    for v in values {
        out.push(b',');
        v.write_json(out);
    }
    out.push(b']');
}

/// One column's value, borrowed from a row ([`Columns::values`]); `None` where it is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnValue<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

impl ColumnValue<'_> {
    pub fn is_null(&self) -> bool {
        matches!(self, ColumnValue::Int(None) | ColumnValue::Text(None))
    }

    /// The value as serde_json writes it, `null` when empty.
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            // Integers cannot fail to serialize into memory.
            ColumnValue::Int(Some(i)) => {
                let _ = serde_json::to_writer(&mut *out, i);
            }
            ColumnValue::Text(Some(s)) => write_json_str(out, s),
            ColumnValue::Int(None) | ColumnValue::Text(None) => out.extend_from_slice(b"null"),
        }
    }
}

/// `s` as a JSON string, byte for byte as serde_json writes it (the hash chain covers these
/// bytes). Texts without a quote, a backslash or a control character, which is nearly all of
/// them, are copied whole: serde_json looks each byte up in its escape table.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // No early exit, so that the check runs over whole vectors.
    let escaped = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escaped {
        // Strings cannot fail to serialize into memory.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// The chained hash of a row: SHA-256 over the previous hash and the row's canonical content,
/// its first 128 bits in base64url (22 characters).
pub fn chain_hash(previous: &str, seq: i64, row: &Columns) -> String {
    chain_hash_of_values(previous, seq, row.values().iter().map(|(_, v)| *v))
}

/// [`chain_hash`] of a row given as its values in [`Columns::values`] order: what SQLite's
/// `sektorbro_chain_hash` computes from the values an `INSERT` stores (`store::sqlite_chain`).
pub fn chain_hash_of_values<'a>(
    previous: &str,
    seq: i64,
    values: impl Iterator<Item = ColumnValue<'a>>,
) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(b"\n");
    thread_local! {
        /// The canonical text being hashed, reused: the ingester hashes a row per record.
        static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    TEXT.with(|text| {
        let mut text = text.borrow_mut();
        text.clear();
        canonical_values_into(seq, values, &mut text);
        h.update(&text[..]);
    });
    let digest = h.finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical text as it was first written (a `Value` built, then written).
    fn canonical_as_value(c: &Columns, seq: i64) -> String {
        json!([
            seq,
            c.recorded_ms,
            c.kind,
            c.action,
            c.outcome,
            c.status,
            c.client,
            c.client_kind,
            c.auth,
            c.orgs,
            c.peer,
            c.rtype,
            c.entity,
            c.patient,
            c.query,
            c.query_len,
            c.request_id,
            c.failure,
            c.forward,
        ])
        .to_string()
    }

    #[test]
    fn the_canonical_text_is_the_one_the_chain_was_built_with() {
        let mut c = Columns {
            recorded_ms: 1_733_400_000_123,
            kind: "rest".into(),
            action: "R".into(),
            outcome: 0,
            status: Some(200),
            client: Some("kommune-0101".into()),
            client_kind: None,
            auth: Some("bearer".into()),
            orgs: Some("urn:oid:1.2.208.176.1.1|123\n\"x\"".into()),
            peer: Some("127.0.0.1".into()),
            rtype: Some("Patient".into()),
            entity: Some("Patient/1".into()),
            patient: Some("Patient/1".into()),
            query: Some("name=Søren\u{1}\t😀&x=\\".into()),
            query_len: Some(42),
            request_id: None,
            failure: Some("</script>\u{7f}\u{2028}".into()),
            forward: None,
        };
        for seq in [1, -5, i64::MAX] {
            assert_eq!(c.canonical(seq), canonical_as_value(&c, seq));
        }
        c.status = None;
        c.client = None;
        c.query_len = None;
        c.kind = String::new();
        assert_eq!(c.canonical(7), canonical_as_value(&c, 7));
    }

    /// A journal line is what serde writes for the row, escapes and empty columns included, so
    /// lines written before and after read back the same.
    #[test]
    fn a_journal_line_is_what_serde_writes() {
        let full = Columns {
            recorded_ms: -1,
            kind: "read\"".into(),
            action: "R".into(),
            outcome: 12,
            status: Some(404),
            client: Some("c\\".into()),
            client_kind: Some("municipality".into()),
            auth: Some("bearer".into()),
            orgs: Some("a\nb".into()),
            peer: Some("::1".into()),
            rtype: Some("Patient".into()),
            entity: Some("Patient/æ\u{1f}".into()),
            patient: Some("Patient/1".into()),
            query: Some("name=Søren\u{1}\t😀&x=\\".into()),
            query_len: Some(i64::MAX),
            request_id: Some("</script>\u{7f}\u{2028}".into()),
            failure: Some("Not Found".into()),
            forward: Some("{\"a\":1}".into()),
        };
        for row in [full, Columns::default()] {
            let mut line = Vec::new();
            row.write_line(&mut line);
            assert_eq!(
                String::from_utf8(line.clone()).expect("utf-8"),
                serde_json::to_string(&row).expect("serde")
            );
            assert_eq!(serde_json::from_slice::<Columns>(&line).expect("back"), row);
        }
    }

    #[test]
    fn a_record_survives_its_compact_form() {
        let mut r = AuditRecord::new(Interaction::Operation("validate".into()), 422);
        r.who = Some(Who {
            client_id: "kommune-0101".into(),
            kind: Some("municipality".into()),
            auth_method: Some("mtls".into()),
            organizations: vec![
                "urn:oid:1.2.208.176.1.1|123".into(),
                "Organization/o".into(),
            ],
            ..Who::default()
        });
        r.peer = Some("10.0.0.1".into());
        r.resource = Some("CarePlan/x/_history/2".into());
        r.resource_type = Some("CarePlan".into());
        r.patient = Some(PatientRef::Identifier {
            system: "urn:oid:1.2.208.176.1.2".into(),
            value: "0101011234".into(),
        });
        r.set_query("a=b", 2);
        r.request_id = Some("req".into());
        r.failure = Some("x".repeat(1000));
        let back = Columns::of(&r).record();
        assert_eq!(back.failure.as_deref().map(str::len), Some(MAX_TEXT_BYTES));
        r.failure = back.failure.clone();
        assert_eq!(back, r);

        let mut f = AuditRecord::forward(
            ForwardAttempt {
                message_id: "m".into(),
                destination: "d".into(),
                url: "http://x".into(),
                attempt: 3,
                result: ForwardResult::Retry,
            },
            Some(503),
        );
        f.patient = Some(PatientRef::Reference("Patient/p".into()));
        assert_eq!(Columns::of(&f).record(), f);
    }

    #[test]
    fn the_hash_covers_every_column_and_the_previous_hash() {
        let mut r = AuditRecord::new(Interaction::Read, 200);
        r.resource = Some("Patient/p".into());
        let c = Columns::of(&r);
        let h = chain_hash(GENESIS, 1, &c);
        assert_eq!(h.len(), 22);
        assert_ne!(h, chain_hash(GENESIS, 2, &c));
        assert_ne!(h, chain_hash(&h, 1, &c));
        let mut edited = c.clone();
        edited.entity = Some("Patient/q".into());
        assert_ne!(h, chain_hash(GENESIS, 1, &edited));
    }
}
