//! The catalog's gRPC API: public reads and search, admin writes (the
//! gateway checks the role), and SKU pricing for the orders service.

use std::sync::Arc;

use contracts::Event;
use contracts::events::ProductChangedV1;
use contracts::grpc::catalog::v1 as pb;
use contracts::grpc::trace_of;
use contracts::values::Sku;
use kit::db::{Db, now_millis};
use kit::outbox::{self, OutboxSignal};
use kit::problem::{Problem, internal_status};
use tonic::{Request, Response, Status};

use crate::domain::{self, Product, ProductChanges, ProductFields};
use crate::search::{MAX_QUERY_CHARS, SearchIndex};
use crate::store::{self, Cursor, ListFilter, StoreError};

#[derive(Clone)]
pub struct CatalogApi {
    pub db: Db,
    pub outbox: OutboxSignal,
    pub index: Arc<SearchIndex>,
}

/// The largest page a list or search returns.
pub const MAX_PAGE: u32 = 100;
pub const DEFAULT_PAGE: u32 = 20;

fn store_error(error: StoreError) -> Status {
    match error {
        StoreError::SkuTaken => Problem::conflict(
            "sku_taken",
            "sku",
            "Another product already has this SKU; SKUs are unique.",
        )
        .into(),
        other => internal_status(other),
    }
}

fn no_such_product() -> Status {
    Problem::not_found("There is no product with that id.").into()
}

pub fn product_message(p: &Product) -> pb::Product {
    pb::Product {
        id: p.id.clone(),
        sku: p.sku.to_string(),
        name: p.name.clone(),
        price: Some(pb::Money {
            amount_minor: p.price.amount_minor(),
            currency: p.price.currency().to_string(),
        }),
        active: p.active,
        description: p.description.clone(),
        image_url: p.image_url.clone(),
        category: p.category.clone(),
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

fn page_size(limit: u32) -> Result<u32, Status> {
    match limit {
        0 => Ok(DEFAULT_PAGE),
        1..=MAX_PAGE => Ok(limit),
        _ => Err(
            Problem::validation("limit", format!("A page holds 1 to {MAX_PAGE} products.")).into(),
        ),
    }
}

fn changed_event(p: &Product) -> ProductChangedV1 {
    ProductChangedV1 {
        product_id: p.id.clone(),
        sku: p.sku.to_string(),
        name: p.name.clone(),
        price: p.price.to_wire(),
        category: p.category.clone(),
        active: p.active,
    }
}

impl CatalogApi {
    /// Writes a new product with its event, then indexes it.
    async fn save(
        &self,
        product: &Product,
        trace: kit::telemetry::TraceParent,
    ) -> Result<(), Status> {
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        store::insert(&mut tx, product).await.map_err(store_error)?;
        self.commit_change(tx, product, trace).await
    }

    /// Applies `changes` to the product as it is now, read and written in
    /// one transaction so that two admins' edits never undo each other.
    async fn change(
        &self,
        id: &str,
        changes: ProductChanges,
        trace: kit::telemetry::TraceParent,
    ) -> Result<Product, Status> {
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let current = store::by_id(&mut tx, id)
            .await
            .map_err(store_error)?
            .ok_or_else(no_such_product)?;
        let changed = changes.apply(&current, now_millis());
        if changed == current {
            return Ok(current);
        }
        store::update(&mut tx, &changed)
            .await
            .map_err(store_error)?;
        self.commit_change(tx, &changed, trace).await?;
        Ok(changed)
    }

    /// Enqueues the product's event in the same transaction as its new
    /// state, commits, then updates the search index.
    async fn commit_change(
        &self,
        mut tx: kit::db::Tx,
        product: &Product,
        trace: kit::telemetry::TraceParent,
    ) -> Result<(), Status> {
        outbox::enqueue(
            &mut tx,
            ProductChangedV1::TOPIC,
            &changed_event(product).to_cloud_event("/kart/catalog", Some(trace)),
        )
        .map_err(internal_status)?;
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        // The database is the truth; should indexing fail, the catch-up
        // task retries it.
        if let Err(error) = self.index.upsert(std::slice::from_ref(product)) {
            tracing::warn!(%error, product_id = %product.id, "indexing deferred to catch-up");
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl pb::catalog_server::Catalog for CatalogApi {
    async fn get_products(
        &self,
        request: Request<pb::GetProductsRequest>,
    ) -> Result<Response<pb::GetProductsResponse>, Status> {
        let skus = request
            .into_inner()
            .skus
            .iter()
            .map(|s| domain::parse_sku(s))
            .collect::<Result<Vec<Sku>, _>>()?;
        let products = store::by_skus(&self.db, &skus).await.map_err(store_error)?;
        Ok(Response::new(pb::GetProductsResponse {
            products: products.iter().map(product_message).collect(),
        }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let input = request.into_inner();
        let product = store::get(&self.db, &input.id)
            .await
            .map_err(store_error)?
            .filter(|p| p.active || input.include_archived)
            .ok_or_else(no_such_product)?;
        Ok(Response::new(product_message(&product)))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let input = request.into_inner();
        let limit = page_size(input.limit)?;
        let category = if input.category.is_empty() {
            None
        } else {
            Some(domain::parse_category(&input.category)?)
        };
        let after = if input.cursor.is_empty() {
            None
        } else {
            Some(Cursor::decode(&input.cursor).ok_or_else(|| {
                Status::from(Problem::validation(
                    "cursor",
                    "This cursor is not one Kart gave out; start again without it.",
                ))
            })?)
        };
        for (field, value) in [
            ("min_price", input.min_price_minor),
            ("max_price", input.max_price_minor),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(
                    Problem::validation(field, "A price filter cannot be negative.").into(),
                );
            }
        }
        if let (Some(min), Some(max)) = (input.min_price_minor, input.max_price_minor)
            && min > max
        {
            return Err(
                Problem::validation("min_price", "min_price is more than max_price.").into(),
            );
        }
        let filter = ListFilter {
            category,
            min_price_minor: input.min_price_minor,
            max_price_minor: input.max_price_minor,
            include_archived: input.include_archived,
            after,
            limit,
        };
        let (products, next) = store::list(&self.db, &filter).await.map_err(store_error)?;
        Ok(Response::new(pb::ListProductsResponse {
            products: products.iter().map(product_message).collect(),
            next_cursor: next.map(|c| c.encode()).unwrap_or_default(),
        }))
    }

    async fn search_products(
        &self,
        request: Request<pb::SearchProductsRequest>,
    ) -> Result<Response<pb::SearchProductsResponse>, Status> {
        let input = request.into_inner();
        let query = input.query.trim();
        if query.is_empty() {
            return Err(Problem::validation("q", "Type something to search for.").into());
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(Problem::validation(
                "q",
                format!("A search has at most {MAX_QUERY_CHARS} characters."),
            )
            .into());
        }
        let category = if input.category.is_empty() {
            None
        } else {
            Some(domain::parse_category(&input.category)?)
        };
        let limit = page_size(input.limit)?;
        let index = Arc::clone(&self.index);
        let query = query.to_owned();
        let result = tokio::task::spawn_blocking(move || {
            index.search(&query, category.as_deref(), limit as usize)
        })
        .await
        .map_err(internal_status)?
        .map_err(internal_status)?;
        Ok(Response::new(pb::SearchProductsResponse {
            hits: result
                .hits
                .iter()
                .map(|hit| pb::SearchHit {
                    product: Some(product_message(&hit.product)),
                    score: hit.score,
                })
                .collect(),
            facets: result
                .facets
                .into_iter()
                .map(|(category, count)| pb::CategoryCount { category, count })
                .collect(),
            total: result.total,
        }))
    }

    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let price = input.price.ok_or_else(|| {
            Status::from(Problem::validation("price", "A product needs a price."))
        })?;
        let fields = ProductFields {
            sku: domain::parse_sku(&input.sku)?,
            name: domain::parse_name(&input.name)?,
            description: domain::parse_description(&input.description)?,
            price: domain::parse_price(price.amount_minor, &price.currency)?,
            image_url: domain::parse_image_url(&input.image_url)?,
            category: domain::parse_category(&input.category)?,
        };
        let now = now_millis();
        let product = Product {
            id: domain::new_product_id(),
            sku: fields.sku,
            name: fields.name,
            description: fields.description,
            price: fields.price,
            image_url: fields.image_url,
            category: fields.category,
            active: true,
            created_at: now,
            updated_at: now,
        };
        self.save(&product, trace).await?;
        tracing::info!(product_id = %product.id, sku = %product.sku, "product created");
        Ok(Response::new(product_message(&product)))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let changes = ProductChanges {
            name: input.name.as_deref().map(domain::parse_name).transpose()?,
            description: input
                .description
                .as_deref()
                .map(domain::parse_description)
                .transpose()?,
            price: input
                .price
                .map(|p| domain::parse_price(p.amount_minor, &p.currency))
                .transpose()?,
            image_url: input
                .image_url
                .as_deref()
                .map(domain::parse_image_url)
                .transpose()?,
            category: input
                .category
                .as_deref()
                .map(domain::parse_category)
                .transpose()?,
            active: input.active,
        };
        if changes.is_empty() {
            return Err(Problem::validation("body", "Send at least one field to change.").into());
        }
        let product = self.change(&input.id, changes, trace).await?;
        Ok(Response::new(product_message(&product)))
    }

    async fn archive_product(
        &self,
        request: Request<pb::ArchiveProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        let trace = trace_of(&request);
        let id = request.into_inner().id;
        let changes = ProductChanges {
            active: Some(false),
            ..ProductChanges::default()
        };
        let product = self.change(&id, changes, trace).await?;
        Ok(Response::new(product_message(&product)))
    }
}
