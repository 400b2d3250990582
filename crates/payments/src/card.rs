//! A card as a shopper types it, checked before any provider sees it.
//!
//! [`CardInput`] holds the number and CVC only for the length of one call:
//! its `Debug` shows the last four digits and nothing else, and nothing
//! here stores or logs it.

use std::fmt;

use kit::problem::Problem;

pub struct CardInput {
    number: String,
    cvc: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl fmt::Debug for CardInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardInput")
            .field("last4", &self.last4())
            .field("exp_month", &self.exp_month)
            .field("exp_year", &self.exp_year)
            .finish_non_exhaustive()
    }
}

impl CardInput {
    /// Checks the number (digits, length, Luhn), expiry and CVC. Spaces and
    /// hyphens in the number are ignored; `today` is (year, month).
    pub fn parse(
        number: &str,
        exp_month: u32,
        exp_year: u32,
        cvc: &str,
        today: (u32, u32),
    ) -> Result<CardInput, Problem> {
        let invalid = |field: &str, detail: &str| {
            Problem::new(
                kit::problem::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_card",
                detail,
            )
            .with_field(field)
        };
        let digits: String = number.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if digits.is_empty() {
            return Err(invalid("card_number", "Enter the card number."));
        }
        if !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("card_number", "A card number has only digits."));
        }
        if !(12..=19).contains(&digits.len()) {
            return Err(invalid("card_number", "A card number has 12 to 19 digits."));
        }
        if !luhn_valid(&digits) {
            return Err(invalid(
                "card_number",
                "This card number is not valid; check for a typo.",
            ));
        }
        if !(1..=12).contains(&exp_month) {
            return Err(invalid("exp_month", "The expiry month is 1 to 12."));
        }
        // Two-digit years are common on cards: 29 means 2029.
        let exp_year = if exp_year < 100 {
            2000 + exp_year
        } else {
            exp_year
        };
        if (exp_year, exp_month) < today {
            return Err(invalid("exp_year", "This card has expired."));
        }
        if exp_year > today.0 + 50 {
            return Err(invalid("exp_year", "The expiry year is too far ahead."));
        }
        let brand = brand_of(&digits);
        let cvc_len = if brand == "amex" { 4 } else { 3 };
        if cvc.len() != cvc_len || !cvc.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(
                "cvc",
                &format!("The security code is the {cvc_len} digits on the card."),
            ));
        }
        Ok(CardInput {
            number: digits,
            cvc: cvc.to_owned(),
            exp_month,
            exp_year,
        })
    }

    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn cvc(&self) -> &str {
        &self.cvc
    }

    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }

    pub fn brand(&self) -> &'static str {
        brand_of(&self.number)
    }
}

/// The Luhn checksum every card number carries.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// The card network, from the number's first digits.
pub fn brand_of(digits: &str) -> &'static str {
    let prefix = |n: usize| {
        digits
            .get(..n)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    match () {
        _ if digits.starts_with('4') => "visa",
        _ if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) => "mastercard",
        _ if prefix(2) == 34 || prefix(2) == 37 => "amex",
        _ if prefix(4) == 6011 || prefix(2) == 65 => "discover",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TODAY: (u32, u32) = (2026, 11);

    #[test]
    fn stripe_test_cards_are_valid() {
        for number in [
            "4242 4242 4242 4242",
            "4000000000000002",
            "4000-0000-0000-9995",
            "5555555555554444",
            "378282246310005",
        ] {
            let cvc = if number.starts_with('3') {
                "1234"
            } else {
                "123"
            };
            let card = CardInput::parse(number, 12, 2030, cvc, TODAY).unwrap();
            assert_eq!(card.last4().len(), 4);
        }
    }

    #[test]
    fn each_mistake_names_its_field() {
        let field = |n: &str, m, y, c: &str| CardInput::parse(n, m, y, c, TODAY).unwrap_err().field;
        assert_eq!(
            field("4242424242424241", 12, 2030, "123").as_deref(),
            Some("card_number")
        );
        assert_eq!(
            field("4242abcd42424242", 12, 2030, "123").as_deref(),
            Some("card_number")
        );
        assert_eq!(
            field("4242424242424242", 13, 2030, "123").as_deref(),
            Some("exp_month")
        );
        assert_eq!(
            field("4242424242424242", 10, 2026, "123").as_deref(),
            Some("exp_year")
        );
        assert_eq!(
            field("4242424242424242", 12, 2030, "12").as_deref(),
            Some("cvc")
        );
    }

    #[test]
    fn debug_shows_last4_only() {
        let card = CardInput::parse("4242424242424242", 12, 30, "123", TODAY).unwrap();
        let shown = format!("{card:?}");
        assert!(!shown.contains("424242424242"));
        assert!(!shown.contains("123,"));
        assert_eq!(card.exp_year, 2030);
    }

    proptest! {
        #[test]
        fn appending_the_luhn_check_digit_makes_a_valid_number(body in "[0-9]{11,18}") {
            let check = (0..10).find(|d| luhn_valid(&format!("{body}{d}"))).unwrap();
            let valid = format!("{body}{check}");
            let invalid = format!("{}{}", body, (check + 1) % 10);
            prop_assert!(luhn_valid(&valid));
            prop_assert!(!luhn_valid(&invalid));
        }
    }
}
