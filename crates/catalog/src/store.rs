//! The catalog database. Rows stay here; callers get [`Product`]s.

use contracts::values::{Money, Sku};
use kit::db::{Db, Tx};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::Product;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a product with that SKU exists")]
    SkuTaken,
    #[error("a stored product is malformed: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "id, sku, name, description, price_minor, currency, image_url, category, active, created_at, updated_at";

/// What a read selects. sqlx's `Any` driver cannot decode SQLite's BOOLEAN
/// columns, so the flag is read as an integer on both databases.
const SELECT_COLUMNS: &str = "id, sku, name, description, price_minor, currency, image_url, category, \
     CAST(CASE WHEN active THEN 1 ELSE 0 END AS BIGINT) AS active, created_at, updated_at";

fn product(row: &AnyRow) -> Result<Product, StoreError> {
    let sku: String = row.try_get("sku")?;
    let currency: String = row.try_get("currency")?;
    Ok(Product {
        id: row.try_get("id")?,
        sku: Sku::parse(&sku).map_err(|e| StoreError::Corrupt(e.0))?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        price: Money::parse(row.try_get("price_minor")?, &currency)
            .map_err(|e| StoreError::Corrupt(e.0))?,
        image_url: row.try_get("image_url")?,
        category: row.try_get("category")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert(tx: &mut Tx, p: &Product) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO products ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&p.id)
    .bind(p.sku.as_str())
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price.amount_minor())
    .bind(p.price.currency().as_str())
    .bind(&p.image_url)
    .bind(&p.category)
    .bind(p.active)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if kit::db::is_unique_violation(&e) {
            StoreError::SkuTaken
        } else {
            StoreError::Db(e)
        }
    })?;
    Ok(())
}

pub async fn update(tx: &mut Tx, p: &Product) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE products SET name = $1, description = $2, price_minor = $3, currency = $4,
         image_url = $5, category = $6, active = $7, updated_at = $8 WHERE id = $9",
    )
    .bind(&p.name)
    .bind(&p.description)
    .bind(p.price.amount_minor())
    .bind(p.price.currency().as_str())
    .bind(&p.image_url)
    .bind(&p.category)
    .bind(p.active)
    .bind(p.updated_at)
    .bind(&p.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn by_id(tx: &mut Tx, id: &str) -> Result<Option<Product>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SELECT_COLUMNS} FROM products WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(product).transpose()
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Product>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SELECT_COLUMNS} FROM products WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *db.read().await?)
    .await?;
    row.as_ref().map(product).transpose()
}

pub async fn by_skus(db: &Db, skus: &[Sku]) -> Result<Vec<Product>, StoreError> {
    if skus.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=skus.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM products WHERE sku IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for sku in skus {
        query = query.bind(sku.as_str());
    }
    let rows = query.fetch_all(&mut *db.read().await?).await?;
    rows.iter().map(product).collect()
}

/// Where a page of the list starts: after the product with this creation
/// time and id (the list runs newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.id)
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        let (at, id) = raw.split_once('.')?;
        let created_at = at.parse().ok()?;
        let id_ok = id.starts_with("prd_")
            && id.len() < 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        id_ok.then(|| Cursor {
            created_at,
            id: id.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub category: Option<String>,
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
    pub include_archived: bool,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// Query arguments, numbered `$1, $2, …` in the order they are added.
#[derive(Default)]
struct Args(Vec<Arg>);

enum Arg {
    Text(String),
    Int(i64),
}

impl Args {
    fn add(&mut self, arg: Arg) -> String {
        self.0.push(arg);
        format!("${}", self.0.len())
    }
}

/// One page, newest first, and the cursor of the next page if there is one.
pub async fn list(
    db: &Db,
    filter: &ListFilter,
) -> Result<(Vec<Product>, Option<Cursor>), StoreError> {
    let mut args = Args::default();
    let mut conditions: Vec<String> = Vec::new();
    if let Some(category) = &filter.category {
        conditions.push(format!(
            "category = {}",
            args.add(Arg::Text(category.clone()))
        ));
    }
    if let Some(after) = &filter.after {
        let at = args.add(Arg::Int(after.created_at));
        let id = args.add(Arg::Text(after.id.clone()));
        conditions.push(format!(
            "(created_at < {at} OR (created_at = {at} AND id < {id}))"
        ));
    }
    if let Some(min) = filter.min_price_minor {
        conditions.push(format!("price_minor >= {}", args.add(Arg::Int(min))));
    }
    if let Some(max) = filter.max_price_minor {
        conditions.push(format!("price_minor <= {}", args.add(Arg::Int(max))));
    }
    if !filter.include_archived {
        conditions.push("active = TRUE".to_owned());
    }
    // One more than a page tells whether there is a next page.
    let limit = args.add(Arg::Int(i64::from(filter.limit) + 1));
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM products {where_clause} ORDER BY created_at DESC, id DESC LIMIT {limit}"
    );
    let mut query = sqlx::query(&sql);
    for arg in args.0 {
        query = match arg {
            Arg::Text(value) => query.bind(value),
            Arg::Int(value) => query.bind(value),
        };
    }
    let rows = query.fetch_all(&mut *db.read().await?).await?;
    let mut products = rows.iter().map(product).collect::<Result<Vec<_>, _>>()?;
    let next = if products.len() > filter.limit as usize {
        products.truncate(filter.limit as usize);
        products.last().map(|p| Cursor {
            created_at: p.created_at,
            id: p.id.clone(),
        })
    } else {
        None
    };
    Ok((products, next))
}

/// Products changed at or after `since` (Unix ms): what the search index
/// catches up on.
pub async fn changed_since(db: &Db, since: i64) -> Result<Vec<Product>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SELECT_COLUMNS} FROM products WHERE updated_at >= $1 ORDER BY updated_at"
    ))
    .bind(since)
    .fetch_all(&mut *db.write().await?)
    .await?;
    rows.iter().map(product).collect()
}

pub async fn count(db: &Db) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(&mut *db.read().await?)
        .await?)
}
