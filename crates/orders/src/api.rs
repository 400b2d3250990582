//! The orders gRPC service: accept an order (priced from the catalog,
//! idempotent by key), read, list, cancel, fulfil, refund.

use std::collections::BTreeMap;

use contracts::Event;
use contracts::events::{OrderCreatedV1, OrderLineV1};
use contracts::grpc::GrpcChannel;
use contracts::grpc::catalog::v1 as catalog_pb;
use contracts::grpc::catalog::v1::catalog_client::CatalogClient;
use contracts::grpc::orders::v1 as pb;
use contracts::grpc::users::v1 as users_pb;
use contracts::grpc::users::v1::payment_methods_client::PaymentMethodsClient;
use contracts::grpc::{trace_of, with_trace};
use contracts::values::{Currency, Money, Quantity, Sku};
use kit::db::{Db, now_millis};
use kit::outbox::OutboxSignal;
use kit::problem::{Problem, StatusCode, internal_status};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::creations::{Creation, OrderWriter, Stored};
use crate::saga::{self, SagaError};
use crate::state::{Cause, Status as OrderStatus};
use crate::store::{self, Filter, Line, Order, StoreError, Transition};

/// At most this many lines in one order.
pub const MAX_LINES: usize = 50;
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

#[derive(Clone)]
pub struct OrdersApi {
    pub db: Db,
    pub outbox: OutboxSignal,
    /// Stores new orders, several to a transaction.
    pub writer: OrderWriter,
    pub catalog: CatalogClient<GrpcChannel>,
    pub payment_methods: PaymentMethodsClient<GrpcChannel>,
}

fn no_such_order() -> Status {
    Problem::not_found("There is no such order.").into()
}

fn saga_error(error: SagaError) -> Status {
    match error {
        SagaError::NoSuchOrder(_) => no_such_order(),
        SagaError::Refused(refusal) => Problem::new(
            StatusCode::CONFLICT,
            "order_state_conflict",
            format!("Not possible now: {refusal}."),
        )
        .into(),
        SagaError::Store(StoreError::Conflict) => Problem::new(
            StatusCode::CONFLICT,
            "order_changed",
            "The order changed while this request ran. Read it again and retry.",
        )
        .into(),
        SagaError::Store(other) => internal_status(other),
    }
}

fn caller(raw: Option<pb::Caller>) -> Result<pb::Caller, Status> {
    raw.filter(|c| !c.user_id.is_empty())
        .ok_or_else(|| Problem::unauthenticated("Sign in first.").into())
}

fn money(amount_minor: i64, currency: &str) -> Option<pb::Money> {
    Some(pb::Money {
        amount_minor,
        currency: currency.to_owned(),
    })
}

pub fn order_message(order: &Order) -> pb::Order {
    let currency = order.currency.as_str();
    pb::Order {
        id: order.id.clone(),
        user_id: order.user_id.clone(),
        status: order.status.as_str().to_owned(),
        lines: order
            .lines
            .iter()
            .map(|l| pb::Line {
                sku: l.sku.clone(),
                name: l.name.clone(),
                quantity: l.quantity,
                unit_price: money(l.unit_price_minor, currency),
                line_total: money(l.unit_price_minor.saturating_mul(l.quantity), currency),
            })
            .collect(),
        total: money(order.total_minor, currency),
        payment_method_id: order.payment_method_id.clone(),
        payment_kind: order.payment_kind.clone(),
        failure_code: order.failure_code.clone(),
        captured: money(order.captured_minor, currency),
        refunded: money(order.refunded_minor, currency),
        refund_pending: money(order.refund_pending_minor, currency),
        history: order
            .history
            .iter()
            .map(|t| pb::Transition {
                from_status: t.from.clone(),
                to_status: t.to.clone(),
                cause: t.cause.clone(),
                detail: t.detail.clone(),
                at_millis: t.at,
            })
            .collect(),
        created_at_millis: order.created_at,
        updated_at_millis: order.updated_at,
    }
}

/// An Idempotency-Key: 1 to 255 visible ASCII characters.
fn check_key(key: &str) -> Result<(), Status> {
    if key.is_empty() || key.len() > 255 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Problem::validation(
            "Idempotency-Key",
            "Send an Idempotency-Key header of 1 to 255 visible characters (a UUID is ideal), \
             the same one when you retry.",
        )
        .into());
    }
    Ok(())
}

/// The lines asked for, checked, with repeated SKUs added up.
fn requested_lines(lines: &[pb::LineRequest]) -> Result<BTreeMap<Sku, Quantity>, Status> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(
            Problem::validation("lines", format!("An order has 1 to {MAX_LINES} lines.")).into(),
        );
    }
    let mut wanted: BTreeMap<Sku, i64> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let sku = Sku::parse(&line.sku)
            .map_err(|e| Problem::validation(&format!("lines[{i}].sku"), e.0))?;
        Quantity::new(line.quantity)
            .map_err(|e| Problem::validation(&format!("lines[{i}].quantity"), e.0))?;
        *wanted.entry(sku).or_default() += line.quantity;
    }
    wanted
        .into_iter()
        .map(|(sku, total)| {
            let quantity = Quantity::new(total)
                .map_err(|e| Problem::validation("lines", format!("{}: {}", sku.as_str(), e.0)))?;
            Ok((sku, quantity))
        })
        .collect()
}

/// What makes two requests "the same" for an idempotency key.
fn request_hash(
    lines: &BTreeMap<Sku, Quantity>,
    payment_method_id: &str,
    checkout: bool,
) -> String {
    let mut hash = Sha256::new();
    for (sku, quantity) in lines {
        hash.update(format!("{}:{};", sku.as_str(), quantity.get()));
    }
    hash.update(format!("|{payment_method_id}|{checkout}"));
    hex::encode(hash.finalize())
}

fn key_reused() -> Status {
    Problem::validation(
        "Idempotency-Key",
        "This Idempotency-Key was already used for a different order. Use a new key for a new order.",
    )
    .into()
}

impl OrdersApi {
    /// The order the caller made with this key, if the request matches it.
    async fn replay(&self, user_id: &str, key: &str, hash: &str) -> Result<Option<Order>, Status> {
        let mut conn = self.db.read().await.map_err(internal_status)?;
        match store::by_key(&mut conn, user_id, key)
            .await
            .map_err(internal_status)?
        {
            Some(order) if order.request_hash == hash => Ok(Some(order)),
            Some(_) => Err(key_reused()),
            None => Ok(None),
        }
    }

    /// The caller's own saved card, checked with the users service.
    async fn check_payment_method(
        &self,
        trace: &kit::telemetry::TraceParent,
        user_id: &str,
        payment_method_id: &str,
    ) -> Result<(), Status> {
        if payment_method_id.is_empty() {
            return Err(Problem::validation(
                "payment_method_id",
                "Choose one of your saved cards to pay with.",
            )
            .into());
        }
        let request = users_pb::GetPaymentMethodRequest {
            user_id: user_id.to_owned(),
            payment_method_id: payment_method_id.to_owned(),
            order_id: String::new(),
        };
        match self
            .payment_methods
            .clone()
            .get_payment_method(with_trace(request, trace))
            .await
        {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Err(Problem::validation(
                "payment_method_id",
                "You have no saved card with this id. List your cards and choose one.",
            )
            .into()),
            Err(status) => Err(Problem::from_status("users", &status).into()),
        }
    }

    /// Today's catalog prices of the lines; every SKU must be on sale, all
    /// in one currency.
    async fn price(
        &self,
        trace: &kit::telemetry::TraceParent,
        wanted: &BTreeMap<Sku, Quantity>,
    ) -> Result<(Vec<Line>, Money), Status> {
        let request = catalog_pb::GetProductsRequest {
            skus: wanted.keys().map(|s| s.as_str().to_owned()).collect(),
        };
        let products = self
            .catalog
            .clone()
            .get_products(with_trace(request, trace))
            .await
            .map_err(|status| Status::from(Problem::from_status("catalog", &status)))?
            .into_inner()
            .products;
        let mut lines = Vec::with_capacity(wanted.len());
        let mut total: Option<Money> = None;
        for (sku, quantity) in wanted {
            let product = products
                .iter()
                .find(|p| p.sku == sku.as_str() && p.active)
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_sku",
                        format!("{} is not on sale. Remove it from the order.", sku.as_str()),
                    )
                    .with_field("lines")
                })?;
            let price = product.price.clone().unwrap_or_default();
            let unit = Money::new(
                price.amount_minor,
                Currency::parse(&price.currency).map_err(internal_status)?,
            )
            .map_err(internal_status)?;
            let line_total = unit
                .times(*quantity)
                .map_err(|e| Problem::validation("lines", format!("{}: {}", sku.as_str(), e.0)))?;
            total = Some(match total {
                None => line_total,
                Some(sum) => sum.checked_add(line_total).map_err(|_| {
                    Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "mixed_currencies",
                        "These products are priced in different currencies; order them separately.",
                    )
                    .with_field("lines")
                })?,
            });
            lines.push(Line {
                sku: sku.as_str().to_owned(),
                name: product.name.clone(),
                quantity: i64::from(quantity.get()),
                unit_price_minor: unit.amount_minor(),
            });
        }
        let total = total.ok_or_else(|| internal_status("an order without lines got this far"))?;
        Ok((lines, total))
    }

    async fn read(&self, caller: &pb::Caller, order_id: &str) -> Result<Order, Status> {
        let mut conn = self.db.read().await.map_err(internal_status)?;
        match store::by_id(&mut conn, order_id)
            .await
            .map_err(internal_status)?
        {
            Some(order) if caller.admin || order.user_id == caller.user_id => Ok(order),
            // Someone else's order does not exist, as far as they can tell.
            _ => Err(no_such_order()),
        }
    }

    async fn change(
        &self,
        caller: &pb::Caller,
        order_id: &str,
        cause: Cause,
        trace: kit::telemetry::TraceParent,
    ) -> Result<Order, Status> {
        self.read(caller, order_id).await?;
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        saga::advance(&mut tx, order_id, cause, "", Some(trace))
            .await
            .map_err(saga_error)?;
        let order = saga::load(&mut tx, order_id).await.map_err(saga_error)?;
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        Ok(order)
    }
}

fn admin_only(caller: &pb::Caller) -> Result<(), Status> {
    if caller.admin {
        Ok(())
    } else {
        Err(Problem::forbidden("Only an admin may do this.").into())
    }
}

#[tonic::async_trait]
impl pb::orders_server::Orders for OrdersApi {
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let caller = caller(input.caller)?;
        check_key(&input.idempotency_key)?;
        let wanted = requested_lines(&input.lines)?;
        if input.checkout && !input.payment_method_id.is_empty() {
            return Err(Problem::validation(
                "payment_method_id",
                "Pay either with a saved card or on the checkout page, not both.",
            )
            .into());
        }
        let hash = request_hash(&wanted, &input.payment_method_id, input.checkout);
        let replayed = |order: &Order| {
            Response::new(pb::CreateOrderResponse {
                order: Some(order_message(order)),
                replayed: true,
            })
        };
        if let Some(order) = self
            .replay(&caller.user_id, &input.idempotency_key, &hash)
            .await?
        {
            return Ok(replayed(&order));
        }
        if !input.checkout {
            self.check_payment_method(&trace, &caller.user_id, &input.payment_method_id)
                .await?;
        }
        let (lines, total) = self.price(&trace, &wanted).await?;

        let now = now_millis();
        let order = Order {
            id: kit::new_id("ord"),
            user_id: caller.user_id.clone(),
            status: OrderStatus::Pending,
            currency: total.currency().as_str().to_owned(),
            total_minor: total.amount_minor(),
            payment_method_id: input.payment_method_id.clone(),
            payment_kind: if input.checkout {
                saga::CHECKOUT.to_owned()
            } else {
                "saved_method".to_owned()
            },
            failure_code: String::new(),
            captured_minor: 0,
            refunded_minor: 0,
            refund_pending_minor: 0,
            idempotency_key: input.idempotency_key.clone(),
            request_hash: hash.clone(),
            created_at: now,
            updated_at: now,
            lines,
            history: vec![Transition {
                from: String::new(),
                to: OrderStatus::Pending.as_str().to_owned(),
                cause: "created".to_owned(),
                detail: String::new(),
                at: now,
            }],
        };
        let event = OrderCreatedV1 {
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            lines: order
                .lines
                .iter()
                .map(|l| OrderLineV1 {
                    sku: l.sku.clone(),
                    quantity: u32::try_from(l.quantity).unwrap_or(u32::MAX),
                    unit_price: contracts::events::Money {
                        amount_minor: l.unit_price_minor,
                        currency: order.currency.clone(),
                    },
                })
                .collect(),
            total: total.to_wire(),
            payment: saga::payment_choice(&order),
            created_at: chrono::Utc::now(),
        };
        let message = order_message(&order);
        let order_id = order.id.clone();
        let creation = Creation {
            event: event.to_cloud_event(saga::SOURCE, Some(trace)),
            order,
        };
        match self.writer.store(creation).await.map_err(internal_status)? {
            Stored::New => {}
            Stored::KeyTaken => {
                // A retry of this request won the race to the database.
                return match self
                    .replay(&caller.user_id, &input.idempotency_key, &hash)
                    .await?
                {
                    Some(order) => Ok(replayed(&order)),
                    None => Err(internal_status(
                        "an idempotency key was taken and then gone",
                    )),
                };
            }
        }
        tracing::info!(%order_id, total = %total, "order accepted");
        Ok(Response::new(pb::CreateOrderResponse {
            order: Some(message),
            replayed: false,
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::OrderRef>,
    ) -> Result<Response<pb::Order>, Status> {
        let input = request.into_inner();
        let caller = caller(input.caller)?;
        let order = self.read(&caller, &input.order_id).await?;
        Ok(Response::new(order_message(&order)))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let input = request.into_inner();
        let caller = caller(input.caller)?;
        if input.all_users {
            admin_only(&caller)?;
        }
        let limit = match input.limit {
            0 => DEFAULT_PAGE,
            1..=MAX_PAGE => input.limit,
            _ => {
                return Err(Problem::validation(
                    "limit",
                    format!("A page holds 1 to {MAX_PAGE} orders."),
                )
                .into());
            }
        };
        let status = match input.status.as_str() {
            "" => None,
            text => Some(OrderStatus::parse(&text.to_uppercase()).ok_or_else(|| {
                Problem::validation(
                    "status",
                    "One of PENDING, RESERVED, PAID, FULFILLED, CANCELLED, FAILED.",
                )
            })?),
        };
        let after = match input.cursor.as_str() {
            "" => None,
            cursor => Some(
                cursor
                    .split_once('.')
                    .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_owned())))
                    .ok_or_else(|| {
                        Problem::validation("cursor", "Pass back a next_cursor you were given.")
                    })?,
            ),
        };
        let filter = Filter {
            user_id: (!input.all_users).then(|| caller.user_id.clone()),
            status,
            after,
            limit: limit + 1,
        };
        let mut conn = self.db.read().await.map_err(internal_status)?;
        let mut orders = store::list(&mut conn, &filter)
            .await
            .map_err(internal_status)?;
        let next_cursor = if orders.len() > limit as usize {
            orders.truncate(limit as usize);
            orders
                .last()
                .map(|o| format!("{}.{}", o.created_at, o.id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.iter().map(order_message).collect(),
            next_cursor,
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::OrderRef>,
    ) -> Result<Response<pb::Order>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let caller = caller(input.caller)?;
        let cause = Cause::Cancel {
            by_admin: caller.admin,
        };
        let order = self.change(&caller, &input.order_id, cause, trace).await?;
        Ok(Response::new(order_message(&order)))
    }

    async fn fulfil_order(
        &self,
        request: Request<pb::OrderRef>,
    ) -> Result<Response<pb::Order>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let caller = caller(input.caller)?;
        admin_only(&caller)?;
        let order = self
            .change(&caller, &input.order_id, Cause::Fulfil, trace)
            .await?;
        Ok(Response::new(order_message(&order)))
    }

    async fn refund_order(
        &self,
        request: Request<pb::RefundOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let caller = caller(input.caller)?;
        admin_only(&caller)?;
        if input.amount_minor < 0 {
            return Err(Problem::validation(
                "amount_minor",
                "A refund is a positive amount in minor units (or 0 for everything left).",
            )
            .into());
        }
        let reason = input.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(Problem::validation(
                "reason",
                "Say why, in 1 to 200 characters: it goes in the order's history.",
            )
            .into());
        }
        self.read(&caller, &input.order_id).await?;
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let order = saga::head(&mut tx, &input.order_id)
            .await
            .map_err(saga_error)?;
        if !order.status.is_paid() {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "order_not_paid",
                format!(
                    "A {} order has no payment to refund; cancel it instead.",
                    order.status
                ),
            )
            .into());
        }
        let left = order.refundable_minor();
        let amount = if input.amount_minor == 0 {
            left
        } else {
            input.amount_minor
        };
        if amount == 0 || amount > left {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "refund_exceeds_capture",
                format!(
                    "At most {left} (minor units of {}) can still be refunded.",
                    order.currency
                ),
            )
            .with_field("amount_minor")
            .into());
        }
        saga::request_refund(&mut tx, &order, amount, reason, Some(trace))
            .await
            .map_err(saga_error)?;
        let order = saga::load(&mut tx, &input.order_id)
            .await
            .map_err(saga_error)?;
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        Ok(Response::new(order_message(&order)))
    }
}
