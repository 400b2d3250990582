//! The order state machine, all of it: which causes move an order from
//! which status to which, and which are refused.
//!
//! ```text
//! PENDING ──stock reserved──▶ RESERVED ──payment captured──▶ PAID ──fulfilled──▶ FULFILLED
//!    │                           │                            │
//!    │ out of stock, cancel      │ payment failed, timed out,  │ cancel (refund)
//!    ▼                           ▼ reservation expired, cancel ▼
//!  FAILED / CANCELLED          FAILED / CANCELLED           CANCELLED
//! ```
//!
//! Every status change goes through [`Status::apply`]; the store persists
//! the transition with its cause, and the saga decides what each one sets
//! off (release stock, ask for payment, refund a capture).

use std::fmt;

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Reserved,
    Paid,
    Fulfilled,
    Cancelled,
    Failed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Pending,
        Status::Reserved,
        Status::Paid,
        Status::Fulfilled,
        Status::Cancelled,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Reserved => "RESERVED",
            Status::Paid => "PAID",
            Status::Fulfilled => "FULFILLED",
            Status::Cancelled => "CANCELLED",
            Status::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing more happens to the order by itself: the saga is over
    /// (a refund of a fulfilled order is still possible, by an admin).
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Fulfilled | Status::Cancelled | Status::Failed)
    }

    /// Money was captured for the order in this status.
    pub fn is_paid(self) -> bool {
        matches!(self, Status::Paid | Status::Fulfilled)
    }

    /// The status `cause` leads to from here, or why it may not happen.
    pub fn apply(self, cause: &Cause) -> Result<Status, Refusal> {
        use Status::*;
        let next = match (self, cause) {
            (Pending, Cause::StockReserved) => Reserved,
            (Pending, Cause::StockRejected) => Failed,
            (Reserved, Cause::PaymentCaptured) => Paid,
            (Reserved, Cause::PaymentFailed { .. }) => Failed,
            (Reserved, Cause::PaymentTimedOut) => Failed,
            (Reserved, Cause::ReservationExpired) => Failed,
            (Pending | Reserved | Paid, Cause::Cancel { .. }) => Cancelled,
            (Paid, Cause::Fulfil) => Fulfilled,
            (from, cause) => {
                return Err(Refusal {
                    from,
                    cause: cause.code().to_owned(),
                });
            }
        };
        Ok(next)
    }
}

impl Cause {
    /// The one status this cause moves an order out of, where there is
    /// only one (a cancel has three): the status the saga can assume and
    /// move from without reading the order first.
    pub fn only_from(&self) -> Option<Status> {
        let mut from = Status::ALL
            .into_iter()
            .filter(|status| status.apply(self).is_ok());
        match (from.next(), from.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order changes status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    StockReserved,
    StockRejected,
    PaymentCaptured,
    /// `code` is the payment service's (`card_declined`, ...).
    PaymentFailed {
        code: String,
    },
    PaymentTimedOut,
    ReservationExpired,
    Cancel {
        by_admin: bool,
    },
    Fulfil,
}

impl Cause {
    /// Stable; stored in the history and shown by the API.
    pub fn code(&self) -> &str {
        match self {
            Cause::StockReserved => "stock_reserved",
            Cause::StockRejected => "out_of_stock",
            Cause::PaymentCaptured => "payment_captured",
            Cause::PaymentFailed { code } => code,
            Cause::PaymentTimedOut => "payment_timeout",
            Cause::ReservationExpired => "reservation_expired",
            Cause::Cancel { by_admin: false } => "cancelled_by_customer",
            Cause::Cancel { by_admin: true } => "cancelled_by_admin",
            Cause::Fulfil => "fulfilled",
        }
    }
}

/// A transition the machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub from: Status,
    pub cause: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} order cannot take `{}`", self.from, self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    fn declined() -> Cause {
        Cause::PaymentFailed {
            code: "card_declined".into(),
        }
    }

    #[test]
    fn the_happy_path() {
        let mut status = Pending;
        for cause in [Cause::StockReserved, Cause::PaymentCaptured, Cause::Fulfil] {
            status = status.apply(&cause).unwrap();
        }
        assert_eq!(status, Fulfilled);
    }

    #[test]
    fn every_allowed_transition() {
        let allowed = [
            (Pending, Cause::StockReserved, Reserved),
            (Pending, Cause::StockRejected, Failed),
            (Pending, Cause::Cancel { by_admin: false }, Cancelled),
            (Reserved, Cause::PaymentCaptured, Paid),
            (Reserved, declined(), Failed),
            (Reserved, Cause::PaymentTimedOut, Failed),
            (Reserved, Cause::ReservationExpired, Failed),
            (Reserved, Cause::Cancel { by_admin: true }, Cancelled),
            (Paid, Cause::Cancel { by_admin: false }, Cancelled),
            (Paid, Cause::Fulfil, Fulfilled),
        ];
        for (from, cause, to) in &allowed {
            assert_eq!(from.apply(cause), Ok(*to), "{from} + {}", cause.code());
        }
        // Everything else is refused, from every status.
        let causes = [
            Cause::StockReserved,
            Cause::StockRejected,
            Cause::PaymentCaptured,
            declined(),
            Cause::PaymentTimedOut,
            Cause::ReservationExpired,
            Cause::Cancel { by_admin: false },
            Cause::Fulfil,
        ];
        for from in Status::ALL {
            for cause in &causes {
                // Who cancels does not change where a cancel may go.
                let same = |c: &Cause| std::mem::discriminant(c) == std::mem::discriminant(cause);
                let listed = allowed.iter().any(|(f, c, _)| *f == from && same(c));
                assert_eq!(
                    from.apply(cause).is_ok(),
                    listed,
                    "{from} + {}",
                    cause.code()
                );
            }
        }
    }

    #[test]
    fn a_cause_names_the_one_status_it_moves_out_of() {
        assert_eq!(Cause::StockReserved.only_from(), Some(Pending));
        assert_eq!(Cause::StockRejected.only_from(), Some(Pending));
        assert_eq!(Cause::PaymentCaptured.only_from(), Some(Reserved));
        assert_eq!(declined().only_from(), Some(Reserved));
        assert_eq!(Cause::PaymentTimedOut.only_from(), Some(Reserved));
        assert_eq!(Cause::ReservationExpired.only_from(), Some(Reserved));
        assert_eq!(Cause::Fulfil.only_from(), Some(Paid));
        // A cancel may come in three statuses: the saga reads the order.
        assert_eq!(Cause::Cancel { by_admin: true }.only_from(), None);
    }

    #[test]
    fn refusals_that_matter() {
        // Pay a cancelled order; cancel a fulfilled or failed one; pay twice.
        assert!(Cancelled.apply(&Cause::PaymentCaptured).is_err());
        assert!(Fulfilled.apply(&Cause::Cancel { by_admin: true }).is_err());
        assert!(Failed.apply(&Cause::Cancel { by_admin: false }).is_err());
        assert!(Paid.apply(&Cause::PaymentCaptured).is_err());
        assert!(Pending.apply(&Cause::PaymentCaptured).is_err());
        assert!(Pending.apply(&Cause::Fulfil).is_err());
        let refusal = Cancelled.apply(&Cause::PaymentCaptured).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "a CANCELLED order cannot take `payment_captured`"
        );
    }

    #[test]
    fn statuses_read_back() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("paid"), None);
    }
}
