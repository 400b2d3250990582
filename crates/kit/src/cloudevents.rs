//! CloudEvents 1.0 in Kafka binary mode: the attributes travel as record
//! headers (`ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_subject`,
//! `ce_specversion`), the W3C `traceparent` beside them, and the record value
//! is the event's JSON data alone.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::bus::{Delivery, Headers, Record, header};
use crate::telemetry::TraceParent;

/// An event on its way to or from the bus, payload still serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Unique per event; consumers deduplicate on it.
    pub id: String,
    /// e.g. `kart.order.created.v1`.
    pub event_type: String,
    /// The producing service, e.g. `/kart/orders`.
    pub source: String,
    /// The aggregate the event is about, e.g. an order id.
    pub subject: String,
    pub time: DateTime<Utc>,
    pub traceparent: Option<TraceParent>,
    /// JSON.
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudEventError {
    #[error("record has no `{0}` header: not a CloudEvent")]
    Missing(&'static str),
    #[error("record header `ce_time` is not RFC 3339: {0}")]
    BadTime(String),
    #[error("unsupported CloudEvents spec version {0}")]
    Version(String),
}

impl CloudEvent {
    /// The headers for binary mode.
    pub fn headers(&self) -> Headers {
        let mut headers = vec![
            ("ce_specversion".to_owned(), "1.0".to_owned()),
            ("ce_id".to_owned(), self.id.clone()),
            ("ce_type".to_owned(), self.event_type.clone()),
            ("ce_source".to_owned(), self.source.clone()),
            ("ce_subject".to_owned(), self.subject.clone()),
            (
                "ce_time".to_owned(),
                self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        if let Some(traceparent) = self.traceparent {
            headers.push(("traceparent".to_owned(), traceparent.to_string()));
        }
        headers
    }

    /// The record to publish, keyed by the subject so one aggregate's events
    /// share a partition and stay in order.
    pub fn to_record(&self, topic: &str) -> Record {
        Record {
            topic: topic.to_owned(),
            key: self.subject.clone(),
            headers: self.headers(),
            payload: self.data.clone(),
        }
    }

    /// Reads a CloudEvent back from a record's headers and value.
    pub fn from_parts(headers: &Headers, payload: &[u8]) -> Result<CloudEvent, CloudEventError> {
        let get = |name: &'static str| header(headers, name).ok_or(CloudEventError::Missing(name));
        let version = get("ce_specversion")?;
        if version != "1.0" {
            return Err(CloudEventError::Version(version.to_owned()));
        }
        let time = get("ce_time")?;
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|_| CloudEventError::BadTime(time.to_owned()))?
            .with_timezone(&Utc);
        Ok(CloudEvent {
            id: get("ce_id")?.to_owned(),
            event_type: get("ce_type")?.to_owned(),
            source: get("ce_source")?.to_owned(),
            subject: header(headers, "ce_subject").unwrap_or_default().to_owned(),
            time,
            traceparent: header(headers, "traceparent").and_then(TraceParent::parse),
            data: payload.to_vec(),
        })
    }

    /// The event in CloudEvents' JSON format (structured mode), to carry it
    /// whole inside another payload (a dead letter). A payload that is not
    /// JSON is carried as a string.
    pub fn to_structured_json(&self) -> serde_json::Value {
        let data = serde_json::from_slice(&self.data).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&self.data).into_owned())
        });
        let mut event = serde_json::json!({
            "specversion": "1.0",
            "id": self.id,
            "type": self.event_type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            "datacontenttype": "application/json",
            "data": data,
        });
        if let (Some(traceparent), Some(fields)) = (self.traceparent, event.as_object_mut()) {
            fields.insert("traceparent".into(), traceparent.to_string().into());
        }
        event
    }

    pub fn from_delivery(delivery: &Delivery) -> Result<CloudEvent, CloudEventError> {
        Self::from_parts(&delivery.headers, &delivery.payload)
    }
}

/// A new, time-ordered event id (UUIDv7), prefixed as Kart's ids are.
pub fn new_event_id() -> String {
    crate::new_id("evt")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloudevent_round_trips_through_headers() {
        let event = CloudEvent {
            id: new_event_id(),
            event_type: "kart.order.created.v1".into(),
            source: "/kart/orders".into(),
            subject: "ord_1".into(),
            time: Utc::now(),
            traceparent: Some(TraceParent::new_root()),
            data: br#"{"order_id":"ord_1"}"#.to_vec(),
        };
        let record = event.to_record("order.events");
        assert_eq!(record.key, "ord_1");
        let mut back = CloudEvent::from_parts(&record.headers, &record.payload).unwrap();
        // ce_time carries microseconds.
        back.time = event.time;
        assert_eq!(back, event);
    }

    #[test]
    fn a_record_without_ce_headers_is_refused() {
        let error = CloudEvent::from_parts(&vec![], b"{}").unwrap_err();
        assert!(error.to_string().contains("ce_specversion"));
    }
}
