//! Value types every service's domain is built from: [`Sku`], [`Quantity`],
//! [`Currency`] and [`Money`].
//!
//! Parse, don't validate: each has a private field and a `parse` that
//! refuses bad input with a [`ValueError`] naming what is wrong, so a value
//! that exists is valid. They live here, beside the contracts, because an
//! order line means the same SKU and the same money in the catalog, the
//! inventory, the order and the payment; services still never depend on
//! each other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value was refused, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn refuse(reason: impl Into<String>) -> ValueError {
    ValueError(reason.into())
}

/// A stock-keeping unit: 1 to 64 of `A-Z`, `0-9` and `-`, starting with a
/// letter or digit. Input is trimmed and upper-cased, so `mug-01` and
/// `MUG-01` are the same SKU.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const MAX_LEN: usize = 64;

    pub fn parse(input: &str) -> Result<Sku, ValueError> {
        let sku = input.trim().to_ascii_uppercase();
        if sku.is_empty() {
            return Err(refuse("A SKU cannot be empty."));
        }
        if sku.len() > Self::MAX_LEN {
            return Err(refuse(format!(
                "A SKU has at most {} characters.",
                Self::MAX_LEN
            )));
        }
        if !sku.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(refuse(
                "A SKU uses only letters, digits and hyphens (e.g. MUG-CERAMIC-01).",
            ));
        }
        if sku.starts_with('-') {
            return Err(refuse("A SKU starts with a letter or a digit."));
        }
        Ok(Sku(sku))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Sku {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sku {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Sku::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// How many units of one SKU an order line asks for: 1 to 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 999;

    pub fn new(units: i64) -> Result<Quantity, ValueError> {
        if units < 1 {
            return Err(refuse("A quantity is at least 1."));
        }
        if units > i64::from(Self::MAX) {
            return Err(refuse(format!(
                "A quantity is at most {} per line.",
                Self::MAX
            )));
        }
        Ok(Quantity(units as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(d)?;
        Quantity::new(raw).map_err(serde::de::Error::custom)
    }
}

/// Active ISO 4217 currency codes.
const ISO_4217: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND \
BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB \
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY \
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR \
MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF \
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS \
UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// An ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(input: &str) -> Result<Currency, ValueError> {
        let code = input.trim().to_ascii_uppercase();
        let bytes: [u8; 3] = code
            .as_bytes()
            .try_into()
            .map_err(|_| refuse("A currency is a three-letter ISO 4217 code, e.g. EUR."))?;
        if !ISO_4217.split_ascii_whitespace().any(|c| c == code) {
            return Err(refuse(format!(
                "{code} is not an ISO 4217 currency code (e.g. EUR, USD, GBP)."
            )));
        }
        Ok(Currency(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters from the list above get in.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point (ISO 4217's minor unit): 0 for JPY,
    /// 3 for KWD, 2 for most.
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

/// An amount as a person reads it: `12.50 EUR`, `1200 JPY`, `-3.00 EUR`.
/// A code that is not ISO 4217 is shown with two decimals.
pub fn format_amount(amount_minor: i64, currency: &str) -> String {
    let digits = Currency::parse(currency).map_or(2, |c| c.minor_digits());
    let sign = if amount_minor < 0 { "-" } else { "" };
    let magnitude = amount_minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{magnitude} {currency}");
    }
    let scale = 10_u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {currency}",
        magnitude / scale,
        magnitude % scale,
        width = digits as usize
    )
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Currency::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An exact amount: integer minor units (cents) and a currency. Never a
/// float. Arithmetic is checked and refuses to mix currencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// The largest amount Kart handles: ten billion major units, far above
    /// any order and far below where `i64` sums could overflow.
    pub const MAX_MINOR: i64 = 1_000_000_000_000;

    /// A price or a total: zero or more, at most [`Money::MAX_MINOR`].
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Money, ValueError> {
        if amount_minor < 0 {
            return Err(refuse("An amount cannot be negative."));
        }
        if amount_minor > Self::MAX_MINOR {
            return Err(refuse(format!(
                "An amount is at most {} minor units.",
                Self::MAX_MINOR
            )));
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    pub fn parse(amount_minor: i64, currency: &str) -> Result<Money, ValueError> {
        Money::new(amount_minor, Currency::parse(currency)?)
    }

    pub fn zero(currency: Currency) -> Money {
        Money {
            amount_minor: 0,
            currency,
        }
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The sum, if both are in the same currency and it stays in range.
    pub fn checked_add(self, other: Money) -> Result<Money, ValueError> {
        if self.currency != other.currency {
            return Err(refuse(format!(
                "Cannot add {} to {}: one order is priced in one currency.",
                other.currency, self.currency
            )));
        }
        let sum = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or_else(|| refuse("The amount is too large."))?;
        Money::new(sum, self.currency)
    }

    /// The price of `quantity` units.
    pub fn times(self, quantity: Quantity) -> Result<Money, ValueError> {
        let product = self
            .amount_minor
            .checked_mul(i64::from(quantity.get()))
            .ok_or_else(|| refuse("The amount is too large."))?;
        Money::new(product, self.currency)
    }

    /// The wire shape used in events.
    pub fn to_wire(self) -> crate::events::Money {
        crate::events::Money {
            amount_minor: self.amount_minor,
            currency: self.currency.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            amount_minor: i64,
            currency: Currency,
        }
        let raw = Raw::deserialize(d)?;
        Money::new(raw.amount_minor, raw.currency).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn skus_are_normalised() {
        assert_eq!(Sku::parse("  mug-01 ").unwrap().as_str(), "MUG-01");
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("-A").is_err());
        assert!(Sku::parse("MUG 01").is_err());
        assert!(Sku::parse(&"A".repeat(65)).is_err());
    }

    #[test]
    fn amounts_read_in_their_currencys_units() {
        assert_eq!(format_amount(1250, "EUR"), "12.50 EUR");
        assert_eq!(format_amount(5, "USD"), "0.05 USD");
        assert_eq!(format_amount(1200, "JPY"), "1200 JPY");
        assert_eq!(format_amount(1234, "KWD"), "1.234 KWD");
        assert_eq!(format_amount(-300, "EUR"), "-3.00 EUR");
    }

    #[test]
    fn currencies_come_from_iso_4217() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "EUR");
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("ABC").is_err());
    }

    #[test]
    fn money_refuses_mixed_currencies_and_overflow() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert!(
            Money::new(1, eur)
                .unwrap()
                .checked_add(Money::new(1, usd).unwrap())
                .is_err()
        );
        let big = Money::new(Money::MAX_MINOR, eur).unwrap();
        assert!(big.checked_add(Money::new(1, eur).unwrap()).is_err());
        assert!(big.times(Quantity::new(2).unwrap()).is_err());
        assert!(Money::new(-1, eur).is_err());
    }

    proptest! {
        #[test]
        fn a_parsed_sku_parses_again_to_itself(raw in "[a-zA-Z0-9][a-zA-Z0-9-]{0,63}") {
            let sku = Sku::parse(&raw).unwrap();
            prop_assert_eq!(Sku::parse(sku.as_str()).unwrap(), sku.clone());
            prop_assert_eq!(sku.as_str(), raw.to_ascii_uppercase());
        }

        #[test]
        fn sku_parsing_never_panics_and_accepts_only_the_alphabet(raw in "\\PC{0,80}") {
            if let Ok(sku) = Sku::parse(&raw) {
                prop_assert!(sku.as_str().chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'));
                prop_assert!(!sku.as_str().is_empty() && sku.as_str().len() <= Sku::MAX_LEN);
            }
        }

        #[test]
        fn quantities_accept_exactly_one_to_the_maximum(units in any::<i64>()) {
            let parsed = Quantity::new(units);
            prop_assert_eq!(parsed.is_ok(), (1..=i64::from(Quantity::MAX)).contains(&units));
        }

        #[test]
        fn money_sums_are_exact(a in 0..Money::MAX_MINOR / 2, b in 0..Money::MAX_MINOR / 2) {
            let eur = Currency::parse("EUR").unwrap();
            let sum = Money::new(a, eur).unwrap().checked_add(Money::new(b, eur).unwrap()).unwrap();
            prop_assert_eq!(sum.amount_minor(), a + b);
        }

        #[test]
        fn money_times_quantity_is_repeated_addition(price in 0..1_000_000i64, units in 1..=Quantity::MAX) {
            let eur = Currency::parse("EUR").unwrap();
            let unit = Money::new(price, eur).unwrap();
            let q = Quantity::new(i64::from(units)).unwrap();
            let mut sum = Money::zero(eur);
            for _ in 0..units { sum = sum.checked_add(unit).unwrap(); }
            prop_assert_eq!(unit.times(q).unwrap(), sum);
        }

        #[test]
        fn money_json_round_trips(amount in 0..Money::MAX_MINOR) {
            let money = Money::parse(amount, "JPY").unwrap();
            let json = serde_json::to_string(&money).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        }
    }
}
