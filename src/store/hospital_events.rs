//! Hospital events: what MedCom HospitalNotification messages said happened to a citizen
//! (admitted, on leave, discharged, deceased, and the cancellations and revisions of those), as
//! SQL. One row per received message, keyed by sender and message id (a repeat writes nothing),
//! read per citizen in time order.
//!
//! This file only builds statements and reads rows; what an event means is `medcom/`'s business.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::search_sql::{Bind, Sql};
use super::StoreError;

/// One hospital event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HospitalEvent {
    /// The sending hospital unit's SOR code (`system|value`).
    pub sender: String,
    /// `Bundle.id` of the message.
    pub message_id: String,
    /// Hash of the citizen's person identifier (see `medcom::citizen_key`).
    pub citizen: String,
    /// The MedCom activity code (`admit-inpatient`, `cancel-admit-emergency`, …).
    pub event: String,
    /// When it happened, milliseconds since the epoch, and as the message gave it.
    pub event_ms: i64,
    pub event_time: String,
    /// The hospital (the Encounter's service provider, else the sender): SOR `system|value` and
    /// name.
    pub hospital_sor: String,
    pub hospital: String,
    /// The Encounter as the message refers to it (its fullUrl).
    pub encounter: String,
    /// The MessageHeader a cancellation or revision refers to.
    pub refers_to: Option<String>,
    /// This message's MessageHeader id (what later messages refer to).
    pub header_id: String,
    pub received_ms: i64,
}

const COLUMNS: &str = "sender, message_id, citizen, event, event_ms, event_time, hospital_sor, hospital, encounter, refers_to, header_id, received_ms";

pub(crate) fn insert(e: &HospitalEvent) -> Sql {
    let mut s = Sql::default();
    s.push("INSERT INTO hospital_events (")
        .push(COLUMNS)
        .push(") VALUES (")
        .text(&e.sender)
        .push(", ")
        .text(&e.message_id)
        .push(", ")
        .text(&e.citizen)
        .push(", ")
        .text(&e.event)
        .push(", ")
        .bind(Bind::Int(e.event_ms))
        .push(", ")
        .text(&e.event_time)
        .push(", ")
        .text(&e.hospital_sor)
        .push(", ")
        .text(&e.hospital)
        .push(", ")
        .text(&e.encounter)
        .push(", ");
    match &e.refers_to {
        Some(r) => s.text(r),
        None => s.push("NULL"),
    };
    s.push(", ")
        .text(&e.header_id)
        .push(", ")
        .bind(Bind::Int(e.received_ms))
        .push(") ON CONFLICT (sender, message_id) DO NOTHING");
    s
}

pub(crate) fn by_key(sender: &str, message_id: &str) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM hospital_events WHERE sender = ")
        .text(sender)
        .push(" AND message_id = ")
        .text(message_id);
    s
}

pub(crate) fn by_citizen(citizen: &str) -> Sql {
    let mut s = Sql::default();
    s.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM hospital_events WHERE citizen = ")
        .text(citizen)
        .push(" ORDER BY event_ms, received_ms, message_id");
    s
}

/// [`COLUMNS`] of the table under `alias` (for a join).
pub(crate) fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn row(row: &AnyRow) -> Result<HospitalEvent, StoreError> {
    let text = |n: &str| -> Result<String, StoreError> {
        row.try_get(n)
            .map_err(|e: sqlx::Error| StoreError::Corrupt(e.to_string()))
    };
    let int = |n: &str| -> Result<i64, StoreError> {
        row.try_get::<i64, _>(n)
            .or_else(|_| row.try_get::<i32, _>(n).map(i64::from))
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    Ok(HospitalEvent {
        sender: text("sender")?,
        message_id: text("message_id")?,
        citizen: text("citizen")?,
        event: text("event")?,
        event_ms: int("event_ms")?,
        event_time: text("event_time")?,
        hospital_sor: text("hospital_sor")?,
        hospital: text("hospital")?,
        encounter: text("encounter")?,
        refers_to: row
            .try_get::<Option<String>, _>("refers_to")
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        header_id: text("header_id")?,
        received_ms: int("received_ms")?,
    })
}

/// Whether `event` starts a hospital stay (inpatient admission or acute ambulant contact).
pub fn is_admission(event: &str) -> bool {
    matches!(event, "admit-inpatient" | "admit-emergency")
}

/// How many hospital stays of one citizen began within `[start_ms, end_ms]` (`end_ms = None`: a
/// course still active), from that citizen's events: admissions (`admit-inpatient`,
/// `admit-emergency`) that were not cancelled later (a `cancel-admit-*` referring to their
/// MessageHeader), counting an admission that refers to an earlier admission of the same stay (a
/// correction sent as a new admit) once. This is the figure the readmission KPI counts for a care
/// course (see `Storage::admissions_during_course`).
pub fn admissions_within(events: &[HospitalEvent], start_ms: i64, end_ms: Option<i64>) -> usize {
    let cancelled: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e.event.starts_with("cancel-admit-"))
        .filter_map(|e| e.refers_to.as_deref())
        .collect();
    let admitted: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| is_admission(&e.event))
        .map(|e| e.header_id.as_str())
        .collect();
    events
        .iter()
        .filter(|e| is_admission(&e.event))
        .filter(|e| !cancelled.contains(e.header_id.as_str()))
        // A correction of an earlier admission is the same stay.
        .filter(|e| {
            e.refers_to
                .as_deref()
                .is_none_or(|r| !admitted.contains(r) || cancelled.contains(r))
        })
        .filter(|e| e.event_ms >= start_ms && end_ms.is_none_or(|end| e.event_ms <= end))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(header: &str, event: &str, ms: i64, refers_to: Option<&str>) -> HospitalEvent {
        HospitalEvent {
            sender: "s".into(),
            message_id: format!("m-{header}"),
            citizen: "c".into(),
            event: event.into(),
            event_ms: ms,
            event_time: String::new(),
            hospital_sor: String::new(),
            hospital: String::new(),
            encounter: String::new(),
            refers_to: refers_to.map(str::to_string),
            header_id: header.into(),
            received_ms: ms,
        }
    }

    #[test]
    fn admissions_count_stays_not_messages_and_not_cancelled_ones() {
        let events = [
            ev("h1", "admit-inpatient", 100, None),
            ev("h2", "start-leave-inpatient", 150, Some("h1")),
            ev("h3", "discharge-inpatient-home", 200, Some("h1")),
            // A second stay, cancelled.
            ev("h4", "admit-emergency", 300, None),
            ev("h5", "cancel-admit-emergency", 310, Some("h4")),
            // A third stay, corrected by a second admit message.
            ev("h6", "admit-inpatient", 400, None),
            ev("h7", "admit-inpatient", 410, Some("h6")),
        ];
        assert_eq!(admissions_within(&events, 0, None), 2);
        assert_eq!(admissions_within(&events, 101, None), 1);
        assert_eq!(admissions_within(&events, 0, Some(399)), 1);
        assert_eq!(admissions_within(&events, 500, None), 0);
    }
}
