//! Inventory's gRPC API: stock levels, admin adjustments and their audit
//! trail, and reservations (the same operations the order events drive).

use contracts::grpc::inventory::v1 as pb;
use contracts::grpc::trace_of;
use contracts::values::Sku;
use kit::db::{Db, now_millis};
use kit::outbox::OutboxSignal;
use kit::problem::{Problem, StatusCode, internal_status};
use tonic::{Request, Response, Status};

use crate::domain::{Adjustment, Lines, ReservationState};
use crate::reservations;
use crate::store::{self, ReserveOutcome, StockLevel, StoreError};

#[derive(Clone)]
pub struct InventoryApi {
    pub db: Db,
    pub outbox: OutboxSignal,
    pub reservation_ttl_ms: i64,
}

fn store_error(error: StoreError) -> Status {
    match error {
        StoreError::NotEnoughStock { on_hand, reserved } => Problem::new(
            StatusCode::CONFLICT,
            "insufficient_stock",
            format!(
                "That would leave less stock than is reserved: {on_hand} on hand, {reserved} reserved for orders."
            ),
        )
        .with_field("delta")
        .into(),
        other => internal_status(other),
    }
}

fn level_message(level: &StockLevel) -> pb::StockLevel {
    pb::StockLevel {
        sku: level.sku.clone(),
        available: level.available(),
        reserved: level.reserved,
        on_hand: level.on_hand,
    }
}

fn parse_skus(raw: &[String]) -> Result<Vec<String>, Status> {
    if raw.len() > 100 {
        return Err(Problem::validation("sku", "Ask for at most 100 SKUs at once.").into());
    }
    raw.iter()
        .map(|s| {
            Sku::parse(s)
                .map(|s| s.to_string())
                .map_err(|e| Status::from(Problem::validation("sku", e.0)))
        })
        .collect()
}

fn order_id(raw: &str) -> Result<&str, Status> {
    if raw.is_empty() || raw.len() > 64 {
        return Err(Problem::validation("order_id", "An order id is 1 to 64 characters.").into());
    }
    Ok(raw)
}

#[tonic::async_trait]
impl pb::inventory_server::Inventory for InventoryApi {
    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let skus = parse_skus(&request.into_inner().skus)?;
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let levels = store::levels(&mut tx, &skus)
            .await
            .map_err(internal_status)?;
        tx.commit().await.map_err(internal_status)?;
        Ok(Response::new(pb::GetStockResponse {
            levels: levels.iter().map(level_message).collect(),
        }))
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::StockLevel>, Status> {
        let input = request.into_inner();
        let adjustment = Adjustment::parse(&input.sku, input.delta, &input.reason)?;
        let id = kit::new_id("adj");
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let level = store::adjust(&mut tx, &adjustment, &input.actor, &id)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(internal_status)?;
        tracing::info!(sku = %adjustment.sku, delta = adjustment.delta, actor = %input.actor, on_hand = level.on_hand, "stock adjusted");
        Ok(Response::new(level_message(&level)))
    }

    async fn list_adjustments(
        &self,
        request: Request<pb::ListAdjustmentsRequest>,
    ) -> Result<Response<pb::ListAdjustmentsResponse>, Status> {
        let input = request.into_inner();
        let sku =
            Sku::parse(&input.sku).map_err(|e| Status::from(Problem::validation("sku", e.0)))?;
        let limit = match input.limit {
            0 => 50,
            1..=500 => i64::from(input.limit),
            _ => return Err(Problem::validation("limit", "Ask for 1 to 500 adjustments.").into()),
        };
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let records = store::adjustments(&mut tx, sku.as_str(), limit)
            .await
            .map_err(internal_status)?;
        tx.commit().await.map_err(internal_status)?;
        Ok(Response::new(pb::ListAdjustmentsResponse {
            adjustments: records
                .into_iter()
                .map(|r| pb::Adjustment {
                    sku: r.sku,
                    delta: r.delta,
                    reason: r.reason,
                    actor: r.actor,
                    on_hand_after: r.on_hand_after,
                    at: r.at,
                })
                .collect(),
        }))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let order_id = order_id(&input.order_id)?;
        let lines = Lines::parse(
            input
                .lines
                .iter()
                .map(|l| (l.sku.as_str(), i64::from(l.quantity))),
        )?;
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let outcome = reservations::reserve(
            &mut tx,
            order_id,
            &lines,
            now_millis(),
            self.reservation_ttl_ms,
            Some(trace),
        )
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        let (state, expires_at, short) = match outcome {
            ReserveOutcome::Reserved { expires_at } => {
                (ReservationState::Reserved, expires_at, Vec::new())
            }
            ReserveOutcome::Rejected { short } => (ReservationState::Rejected, 0, short),
            ReserveOutcome::Existing(r) => (
                r.state,
                if r.state == ReservationState::Reserved {
                    r.expires_at
                } else {
                    0
                },
                r.short,
            ),
        };
        Ok(Response::new(pb::ReserveResponse {
            state: state.as_str().to_owned(),
            expires_at,
            short: short
                .into_iter()
                .map(|s| pb::ShortLine {
                    sku: s.sku,
                    requested: s.requested,
                    available: s.available,
                })
                .collect(),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReservationState>, Status> {
        let trace = trace_of(&request);
        let input = request.into_inner();
        let order_id = order_id(&input.order_id)?.to_owned();
        let reason = if input.reason.trim().is_empty() {
            "released"
        } else {
            input.reason.trim()
        };
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let state = reservations::release(
            &mut tx,
            &order_id,
            ReservationState::Released,
            reason,
            Some(trace),
        )
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        Ok(Response::new(pb::ReservationState {
            order_id,
            state: state.as_str().to_owned(),
        }))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::ReservationState>, Status> {
        let trace = trace_of(&request);
        let order_id = order_id(&request.get_ref().order_id)?.to_owned();
        let mut tx = self.db.begin().await.map_err(internal_status)?;
        let state = match reservations::commit(&mut tx, &order_id, Some(trace)).await {
            Ok(state) => state,
            Err(StoreError::Corrupt(_)) => {
                return Err(Problem::not_found("There is no reservation for that order.").into());
            }
            Err(other) => return Err(store_error(other)),
        };
        tx.commit().await.map_err(internal_status)?;
        self.outbox.notify();
        Ok(Response::new(pb::ReservationState {
            order_id,
            state: state.as_str().to_owned(),
        }))
    }
}
