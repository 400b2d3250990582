//! The catalog's domain: a product and the rules for its fields. No I/O.

use contracts::values::{Money, Sku};
use kit::problem::Problem;

/// A product as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// `prd_…`
    pub id: String,
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Money,
    /// An absolute http(s) URL or a path on this site; empty for none.
    pub image_url: String,
    /// A lower-case slug, e.g. `coffee` or `kitchen-tools`.
    pub category: String,
    /// On sale. Archiving sets this false; nothing is ever deleted.
    pub active: bool,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields a product is made of, each checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFields {
    pub sku: Sku,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub image_url: String,
    pub category: String,
}

/// What an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub image_url: Option<String>,
    pub category: Option<String>,
    pub active: Option<bool>,
}

impl ProductChanges {
    pub fn is_empty(&self) -> bool {
        *self == ProductChanges::default()
    }

    /// The product with these changes applied, stamped `now`.
    pub fn apply(&self, product: &Product, now: i64) -> Product {
        Product {
            name: self.name.clone().unwrap_or_else(|| product.name.clone()),
            description: self
                .description
                .clone()
                .unwrap_or_else(|| product.description.clone()),
            price: self.price.unwrap_or(product.price),
            image_url: self
                .image_url
                .clone()
                .unwrap_or_else(|| product.image_url.clone()),
            category: self
                .category
                .clone()
                .unwrap_or_else(|| product.category.clone()),
            active: self.active.unwrap_or(product.active),
            updated_at: now.max(product.updated_at + 1),
            ..product.clone()
        }
    }
}

pub fn parse_sku(raw: &str) -> Result<Sku, Problem> {
    Sku::parse(raw).map_err(|e| Problem::validation("sku", e.0))
}

pub fn parse_name(raw: &str) -> Result<String, Problem> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(Problem::validation("name", "A product needs a name."));
    }
    if name.chars().count() > 200 {
        return Err(Problem::validation(
            "name",
            "A product name has at most 200 characters.",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(Problem::validation(
            "name",
            "A product name cannot contain control characters.",
        ));
    }
    Ok(name.to_owned())
}

pub fn parse_description(raw: &str) -> Result<String, Problem> {
    let description = raw.trim();
    if description.chars().count() > 5000 {
        return Err(Problem::validation(
            "description",
            "A description has at most 5000 characters.",
        ));
    }
    Ok(description.to_owned())
}

pub fn parse_price(amount_minor: i64, currency: &str) -> Result<Money, Problem> {
    contracts::values::Currency::parse(currency)
        .map_err(|e| Problem::validation("price.currency", e.0))
        .and_then(|c| {
            Money::new(amount_minor, c).map_err(|e| Problem::validation("price.amount_minor", e.0))
        })
}

pub fn parse_image_url(raw: &str) -> Result<String, Problem> {
    let url = raw.trim();
    let refuse = || {
        Problem::validation(
            "image_url",
            "An image URL starts with https://, http:// or / and has no spaces.",
        )
    };
    if url.is_empty() {
        return Ok(String::new());
    }
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse());
    }
    let scheme_ok = url.starts_with("https://") && url.len() > 8
        || url.starts_with("http://") && url.len() > 7
        || url.starts_with('/') && !url.starts_with("//");
    if !scheme_ok {
        return Err(refuse());
    }
    Ok(url.to_owned())
}

/// Categories are slugs so they work in URLs and as facets: trimmed,
/// lower-cased, spaces become hyphens.
pub fn parse_category(raw: &str) -> Result<String, Problem> {
    let category = raw.trim().to_lowercase().replace(' ', "-");
    if category.is_empty() {
        return Err(Problem::validation(
            "category",
            "A product needs a category.",
        ));
    }
    if category.len() > 40
        || !category
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Problem::validation(
            "category",
            "A category is up to 40 letters, digits and hyphens, e.g. kitchen-tools.",
        ));
    }
    Ok(category)
}

pub fn new_product_id() -> String {
    kit::new_id("prd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_become_slugs() {
        assert_eq!(parse_category(" Kitchen Tools ").unwrap(), "kitchen-tools");
        assert!(parse_category("").is_err());
        assert!(parse_category("café").is_err());
    }

    #[test]
    fn image_urls_are_absolute_or_site_paths() {
        assert!(parse_image_url("https://cdn.example.com/a.png").is_ok());
        assert!(parse_image_url("/images/a.svg").is_ok());
        assert_eq!(parse_image_url("").unwrap(), "");
        assert!(parse_image_url("javascript:alert(1)").is_err());
        assert!(parse_image_url("//evil.example.com/a.png").is_err());
        assert!(parse_image_url("https://x y").is_err());
    }

    #[test]
    fn price_errors_name_the_part_at_fault() {
        assert_eq!(
            parse_price(100, "EURO").unwrap_err().field.as_deref(),
            Some("price.currency")
        );
        assert_eq!(
            parse_price(-1, "EUR").unwrap_err().field.as_deref(),
            Some("price.amount_minor")
        );
    }

    #[test]
    fn an_update_always_moves_updated_at_forward() {
        let product = Product {
            id: new_product_id(),
            sku: Sku::parse("A-1").unwrap(),
            name: "A".into(),
            description: String::new(),
            price: parse_price(100, "EUR").unwrap(),
            image_url: String::new(),
            category: "misc".into(),
            active: true,
            created_at: 10,
            updated_at: 10,
        };
        let changed = ProductChanges {
            name: Some("B".into()),
            ..Default::default()
        }
        .apply(&product, 5);
        assert_eq!(changed.name, "B");
        assert_eq!(changed.updated_at, 11);
        assert_eq!(changed.price, product.price);
    }
}
