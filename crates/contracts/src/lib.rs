//! Kart's contracts between services: what travels on the bus and over gRPC.
//!
//! - [`topics`]: topic names, one per aggregate, plus the dead-letter topic.
//! - [`events`]: versioned event payloads. They are built from domain types
//!   at the edge of each service, never from database rows, so a schema
//!   change inside a service cannot break its consumers. A breaking change
//!   makes a new version (`...v2`) beside the old one.
//! - [`values`]: SKU, quantity, currency and money, parsed once and shared
//!   by every service's domain.
//! - [`grpc`]: generated clients and servers, and W3C trace context carried
//!   in gRPC metadata.
//!
//! `asyncapi.yaml` beside this crate documents every topic and payload; a
//! test keeps it in step with the types here.

pub mod events;
pub mod grpc;
pub mod topics;
pub mod values;

pub use events::{DecodeError, Event};
