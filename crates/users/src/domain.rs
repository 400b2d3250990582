//! The users domain: values parsed from input, and the rules about them.
//! No I/O here.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use kit::problem::Problem;
use secrecy::{ExposeSecret, SecretString};

/// A normalised email address: trimmed and lower-cased, so one person gets
/// one account whatever the capitalisation they type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Email, Problem> {
        let refuse = |why: &str| Problem::validation("email", why);
        let email = input.trim().to_lowercase();
        if email.is_empty() {
            return Err(refuse("Enter your email address."));
        }
        if email.len() > 254 {
            return Err(refuse("An email address has at most 254 characters."));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(refuse("An email address has an @, e.g. ada@example.com."));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        if !local_ok {
            return Err(refuse(
                "The part before the @ is not valid; check for spaces or stray characters.",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(refuse(
                "The part after the @ is not a valid domain, e.g. example.com.",
            ));
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy, held as a secret so it never prints.
///
/// The policy follows NIST SP 800-63B: length matters, composition rules
/// do not. 10 to 128 characters, not one of the passwords everyone tries
/// first, and not the account's own email.
pub struct Password(SecretString);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// Passwords attackers try first; a longer list belongs in a breach corpus.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789012",
    "0123456789",
    "1111111111",
    "0000000000",
    "qwertyuiop",
    "password12",
    "password123",
    "password1234",
    "passwordpassword",
    "iloveyou123",
    "qwerty12345",
    "qwerty123456",
    "abcdefghij",
    "letmein123",
    "welcome123",
    "administrator",
    "changeme123",
    "1q2w3e4r5t",
];

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 128;

    /// Checks a new password against the policy.
    pub fn new(input: &str, email: &Email) -> Result<Password, Problem> {
        let refuse = |why: String| Problem::validation("password", why);
        let chars = input.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(refuse(format!(
                "A password has at least {} characters; a few words together make a good one.",
                Self::MIN_CHARS
            )));
        }
        if chars > Self::MAX_CHARS {
            return Err(refuse(format!(
                "A password has at most {} characters.",
                Self::MAX_CHARS
            )));
        }
        let lower = input.to_lowercase();
        if COMMON_PASSWORDS.contains(&lower.as_str()) || input.chars().all(|c| input.starts_with(c))
        {
            return Err(refuse(
                "That password is among the first ones attackers try; choose another.".into(),
            ));
        }
        if lower == email.as_str() || email.as_str().split('@').next() == Some(lower.as_str()) {
            return Err(refuse("A password cannot be your email address.".into()));
        }
        Ok(Password(SecretString::from(input.to_owned())))
    }

    /// argon2id with the OWASP-recommended parameters (19 MiB, 2 passes)
    /// and a random salt, in PHC string form. Slow on purpose: run it off
    /// the async threads.
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
        let salt = SaltString::encode_b64(&salt)?;
        Ok(Argon2::default()
            .hash_password(self.0.expose_secret().as_bytes(), &salt)?
            .to_string())
    }
}

/// Whether `password` matches a stored argon2id hash.
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a password nobody has, checked when the email is unknown so a
/// failed sign-in takes as long either way and does not reveal which
/// addresses have accounts.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut secret = [0u8; 24];
        let _ = getrandom::fill(&mut secret);
        Password(SecretString::from(hex::encode(secret)))
            .hash()
            .unwrap_or_default()
    });
    &DECOY
}

/// The name shown in the storefront and in mails: 1 to 100 characters.
/// When none is given, the part of the email before the @.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(input: &str, email: &Email) -> Result<DisplayName, Problem> {
        let name = input.trim();
        if name.is_empty() {
            let fallback = email.as_str().split('@').next().unwrap_or("shopper");
            return Ok(DisplayName(fallback.to_owned()));
        }
        if name.chars().count() > 100 {
            return Err(Problem::validation(
                "display_name",
                "A display name has at most 100 characters.",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Problem::validation(
                "display_name",
                "A display name cannot contain control characters.",
            ));
        }
        Ok(DisplayName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(stored: &str) -> Role {
        if stored == "admin" {
            Role::Admin
        } else {
            Role::Customer
        }
    }
}

/// What Kart keeps of a card the provider tokenised: enough for a shopper
/// to recognise it, nothing to charge it with elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCard {
    pub provider: String,
    pub provider_token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

impl SavedCard {
    /// Checks the provider's answer; `now` is (year, month).
    pub fn parse(
        provider: &str,
        provider_token: &str,
        brand: &str,
        last4: &str,
        exp_month: u32,
        exp_year: u32,
        now: (u32, u32),
    ) -> Result<SavedCard, Problem> {
        if provider.trim().is_empty() || provider_token.trim().is_empty() {
            return Err(Problem::validation(
                "provider_token",
                "The payment provider did not return a token for this card.",
            ));
        }
        if last4.len() != 4 || !last4.chars().all(|c| c.is_ascii_digit()) {
            return Err(Problem::validation(
                "last4",
                "last4 is the card's last four digits.",
            ));
        }
        if !(1..=12).contains(&exp_month) {
            return Err(Problem::validation(
                "exp_month",
                "The expiry month is 1 to 12.",
            ));
        }
        if (exp_year, exp_month) < now {
            return Err(Problem::validation("exp_year", "This card has expired."));
        }
        if exp_year > now.0 + 50 {
            return Err(Problem::validation(
                "exp_year",
                "The expiry year is too far ahead.",
            ));
        }
        Ok(SavedCard {
            provider: provider.to_owned(),
            provider_token: provider_token.to_owned(),
            brand: brand.trim().to_lowercase(),
            last4: last4.to_owned(),
            exp_month,
            exp_year,
        })
    }
}

pub use kit::new_id;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn email() -> Email {
        Email::parse("ada@example.com").unwrap()
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Ada.Lovelace@Example.COM ")
                .unwrap()
                .as_str(),
            "ada.lovelace@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_refused_naming_the_field() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@exa mple.com",
            "ada..l@example.com",
            "ada@-x.com",
        ] {
            let problem = Email::parse(bad).unwrap_err();
            assert_eq!(problem.field.as_deref(), Some("email"), "{bad}");
            assert_eq!(problem.status, 422);
        }
    }

    #[test]
    fn the_password_policy_refuses_short_common_and_email_passwords() {
        assert!(Password::new("correct horse battery", &email()).is_ok());
        assert!(Password::new("short", &email()).is_err());
        assert!(Password::new("Password123", &email()).is_err());
        assert!(Password::new("aaaaaaaaaaaa", &email()).is_err());
        assert!(Password::new("ada@example.com", &email()).is_err());
        assert!(Password::new(&"x".repeat(129), &email()).is_err());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let password = Password::new("correct horse battery", &email()).unwrap();
        let hash = password.hash().unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(decoy_hash().starts_with("$argon2id$"));
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn passwords_never_print() {
        let password = Password::new("correct horse battery", &email()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn expired_cards_are_refused() {
        let parse = |m, y| SavedCard::parse("simulated", "pm_x", "visa", "4242", m, y, (2026, 11));
        assert!(parse(11, 2026).is_ok());
        assert!(parse(10, 2026).is_err());
        assert!(parse(13, 2030).is_err());
        assert!(
            SavedCard::parse("simulated", "pm_x", "visa", "42a2", 1, 2030, (2026, 11)).is_err()
        );
    }

    proptest! {
        #[test]
        fn email_parsing_never_panics_and_is_idempotent(raw in "\\PC{0,300}") {
            if let Ok(email) = Email::parse(&raw) {
                prop_assert_eq!(Email::parse(email.as_str()).unwrap(), email.clone());
                prop_assert!(email.as_str().len() <= 254);
                prop_assert_eq!(email.as_str().matches('@').count(), 1);
            }
        }

        #[test]
        fn well_formed_addresses_are_accepted(local in "[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", domain in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            prop_assume!(!local.contains(".."));
            let raw = format!("{local}@{domain}.{tld}");
            let parsed = Email::parse(&raw.to_uppercase()).unwrap();
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }
    }
}
