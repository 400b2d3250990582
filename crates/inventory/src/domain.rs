//! The inventory domain: reservation states and the input rules. No I/O.

use std::collections::BTreeMap;

use contracts::values::{Quantity, Sku};
use kit::problem::Problem;
use serde::{Deserialize, Serialize};

/// Where a reservation is in its life. `Reserved` is the only state that
/// holds stock; every other state is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Reserved,
    Rejected,
    Released,
    Expired,
    Committed,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Reserved => "reserved",
            ReservationState::Rejected => "rejected",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
            ReservationState::Committed => "committed",
        }
    }

    pub fn parse(stored: &str) -> Option<ReservationState> {
        Some(match stored {
            "reserved" => ReservationState::Reserved,
            "rejected" => ReservationState::Rejected,
            "released" => ReservationState::Released,
            "expired" => ReservationState::Expired,
            "committed" => ReservationState::Committed,
            _ => return None,
        })
    }
}

/// A line that could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Short {
    pub sku: String,
    pub requested: u32,
    pub available: i64,
}

/// An order's lines, one per SKU (repeated SKUs are added up), in SKU order
/// so concurrent reservations lock rows in the same order and never
/// deadlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines(Vec<(Sku, Quantity)>);

impl Lines {
    pub fn parse<'a>(lines: impl IntoIterator<Item = (&'a str, i64)>) -> Result<Lines, Problem> {
        let mut merged: BTreeMap<Sku, i64> = BTreeMap::new();
        for (i, (sku, quantity)) in lines.into_iter().enumerate() {
            let sku = Sku::parse(sku)
                .map_err(|e| Problem::validation(&format!("lines[{i}].sku"), e.0))?;
            Quantity::new(quantity)
                .map_err(|e| Problem::validation(&format!("lines[{i}].quantity"), e.0))?;
            *merged.entry(sku).or_default() += quantity;
        }
        if merged.is_empty() {
            return Err(Problem::validation(
                "lines",
                "An order has at least one line.",
            ));
        }
        if merged.len() > 100 {
            return Err(Problem::validation(
                "lines",
                "An order has at most 100 different SKUs.",
            ));
        }
        let lines = merged
            .into_iter()
            .map(|(sku, total)| {
                Quantity::new(total)
                    .map(|q| (sku, q))
                    .map_err(|e| Problem::validation("lines", e.0))
            })
            .collect::<Result<_, _>>()?;
        Ok(Lines(lines))
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Sku, Quantity)> {
        self.0.iter()
    }
}

/// A manual stock change: a non-zero delta and a reason for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub sku: Sku,
    pub delta: i64,
    pub reason: String,
}

impl Adjustment {
    pub const MAX_DELTA: i64 = 1_000_000;

    pub fn parse(sku: &str, delta: i64, reason: &str) -> Result<Adjustment, Problem> {
        let sku = Sku::parse(sku).map_err(|e| Problem::validation("sku", e.0))?;
        if delta == 0 {
            return Err(Problem::validation(
                "delta",
                "An adjustment changes stock by at least one unit.",
            ));
        }
        if delta.abs() > Self::MAX_DELTA {
            return Err(Problem::validation(
                "delta",
                format!(
                    "An adjustment changes stock by at most {} units.",
                    Self::MAX_DELTA
                ),
            ));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Problem::validation(
                "reason",
                "Say why stock changes (e.g. \"delivery from supplier\", \"damaged\").",
            ));
        }
        if reason.chars().count() > 500 {
            return Err(Problem::validation(
                "reason",
                "A reason has at most 500 characters.",
            ));
        }
        Ok(Adjustment {
            sku,
            delta,
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_skus_are_added_up_and_sorted() {
        let lines = Lines::parse([("b-1", 2), ("a-1", 1), ("B-1", 3)]).unwrap();
        let flat: Vec<(String, u32)> = lines
            .iter()
            .map(|(s, q)| (s.to_string(), q.get()))
            .collect();
        assert_eq!(flat, [("A-1".to_owned(), 1), ("B-1".to_owned(), 5)]);
    }

    #[test]
    fn bad_lines_name_their_index() {
        assert_eq!(
            Lines::parse([("A", 1), ("B", 0)])
                .unwrap_err()
                .field
                .as_deref(),
            Some("lines[1].quantity")
        );
        assert_eq!(
            Lines::parse([("", 1)]).unwrap_err().field.as_deref(),
            Some("lines[0].sku")
        );
        assert_eq!(
            Lines::parse([]).unwrap_err().field.as_deref(),
            Some("lines")
        );
    }

    #[test]
    fn adjustments_need_a_delta_and_a_reason() {
        assert!(Adjustment::parse("A", 5, "delivery").is_ok());
        assert_eq!(
            Adjustment::parse("A", 0, "x").unwrap_err().field.as_deref(),
            Some("delta")
        );
        assert_eq!(
            Adjustment::parse("A", 5, "  ")
                .unwrap_err()
                .field
                .as_deref(),
            Some("reason")
        );
    }
}
