//! Live order status for browsers and the bench: server-sent events.
//!
//! Each gateway process reads `order.events` in a consumer group of its own
//! (every replica must see every order's events), starting at the topics'
//! ends, and wakes the streams watching each order that moved.
//! `GET /api/v1/orders/{id}/stream` then sends the order as JSON when the
//! stream opens and again each time the order changes. The event only says
//! *that* something happened: the order itself is read from the orders
//! service, which checks the caller owns it, so the stream shows exactly
//! what `GET /api/v1/orders/{id}` would. A slow re-read every few seconds
//! covers an announcement lost to a lagging receiver or a bus hiccup.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use contracts::Event as _;
use contracts::events::OrderCreatedV1;
use contracts::grpc::orders::v1 as pb;
use contracts::topics;
use futures_util::Stream;
use kit::SharedBus;
use kit::http::RequestContext;
use kit::outbox::{Backoff, sleep_or_cancel};
use kit::problem::Problem;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::api::ProblemDoc;
use crate::api::orders::{grpc_caller, order_body};
use crate::auth::Caller;
use crate::upstream::{answer, request};

/// The re-read that covers a lost announcement.
const RESYNC: Duration = Duration::from_secs(10);
/// How often an idle stream writes a keep-alive comment. Writing is also
/// how a stream notices its client has gone, so this bounds how long a
/// closed stream lingers.
const KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Watchers per order id: an announcement wakes only the streams of the
/// order that moved, not every open stream.
#[derive(Clone, Default)]
pub struct OrderChanges {
    watchers: Arc<Mutex<HashMap<String, Watched>>>,
}

/// An order's change counter and how many streams watch it.
type Watched = (watch::Sender<u64>, usize);

/// A stream's registration; dropping it unregisters.
pub struct Watching {
    changes: OrderChanges,
    order_id: String,
    receiver: watch::Receiver<u64>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(mut watchers) = self.changes.watchers.lock()
            && let Some((_, count)) = watchers.get_mut(&self.order_id)
        {
            *count -= 1;
            if *count == 0 {
                watchers.remove(&self.order_id);
            }
        }
    }
}

impl OrderChanges {
    /// Starts watching `order_id`.
    pub fn watch(&self, order_id: &str) -> Watching {
        let receiver = match self.watchers.lock() {
            Ok(mut watchers) => {
                let entry = watchers
                    .entry(order_id.to_owned())
                    .or_insert_with(|| (watch::channel(0).0, 0));
                entry.1 += 1;
                entry.0.subscribe()
            }
            // A poisoned map: the stream still works on its re-reads.
            Err(_) => watch::channel(0).1,
        };
        Watching {
            changes: self.clone(),
            order_id: order_id.to_owned(),
            receiver,
        }
    }

    /// Wakes the streams watching `order_id`, if any.
    fn announce(&self, order_id: &str) {
        if let Ok(watchers) = self.watchers.lock()
            && let Some((sender, _)) = watchers.get(order_id)
        {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Reads `order.events` from their current ends until shutdown,
    /// announcing each order that moved.
    pub async fn follow(self, bus: SharedBus, shutdown: CancellationToken) {
        let wanted = [topics::ORDER_EVENTS.to_owned()];
        let Some(mut subscription) =
            crate::subscribe_in_own_group(&bus, "gateway-live", &wanted, &shutdown).await
        else {
            return;
        };
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        // Partitions not yet moved to the end they had when we started:
        // history is not news.
        let mut generation = u64::MAX;
        let mut unpositioned: Vec<(String, i32, i64)> = Vec::new();
        loop {
            if subscription.assignment_generation() != generation {
                generation = subscription.assignment_generation();
                unpositioned = match bus.describe_topics().await {
                    Ok(described) => subscription
                        .assignment()
                        .into_iter()
                        .filter_map(|(topic, partition)| {
                            let end = described
                                .iter()
                                .find(|t| t.name == topic)?
                                .partition_ends
                                .get(usize::try_from(partition).ok()?)
                                .copied()?;
                            Some((topic, partition, end))
                        })
                        .collect(),
                    Err(error) => {
                        tracing::debug!(%error, "cannot read the topics' ends");
                        Vec::new()
                    }
                };
            }
            let mut still = Vec::new();
            for (topic, partition, end) in unpositioned.drain(..) {
                if subscription.seek(&topic, partition, end).await.is_err() {
                    still.push((topic, partition, end));
                }
            }
            unpositioned = still;
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = subscription.next() => Some(next),
                () = tokio::time::sleep(Duration::from_millis(250)) => None,
            };
            match next {
                // A stream opens on an order that exists: its creation is
                // never news to it.
                Some(Ok(delivery))
                    if !delivery.key.is_empty()
                        && delivery.header("ce_type") != Some(OrderCreatedV1::TYPE) =>
                {
                    self.announce(&delivery.key);
                }
                None | Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "live status read failed; retrying");
                    sleep_or_cancel(backoff.next_delay(), &shutdown).await;
                }
            }
        }
    }
}

async fn read_order(
    state: &AppState,
    context: &RequestContext,
    caller: &Caller,
    id: &str,
) -> Result<pb::Order, Problem> {
    let message = pb::OrderRef {
        caller: grpc_caller(caller),
        order_id: id.to_owned(),
    };
    answer(
        "orders",
        state
            .upstreams
            .orders
            .clone()
            .get_order(request(context, message))
            .await,
    )
}

fn order_event(order: pb::Order) -> Event {
    let body = serde_json::to_string(&order_body(order)).unwrap_or_default();
    Event::default().event("order").data(body)
}

/// Your order, now and each time it changes (server-sent events).
///
/// Each `order` event carries the order as `GET /api/v1/orders/{id}` returns
/// it; the first arrives at once. The stream stays open (with keep-alive
/// comments) until the client closes it.
#[utoipa::path(get, path = "/api/v1/orders/{id}/stream", tag = "orders",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "The order's id (`ord_…`).")),
    responses(
        (status = 200, description = "`text/event-stream` of `order` events.", content_type = "text/event-stream"),
        (status = 401, description = "`unauthenticated`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such order of yours.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn order_stream(
    State(state): State<Arc<AppState>>,
    Extension(context): Extension<RequestContext>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    // Listen before the first read, so no change falls in between.
    let changes = state.order_changes.watch(&id);
    let first = read_order(&state, &context, &caller, &id).await?;
    let seen = (first.status.clone(), first.updated_at_millis);
    struct Watch {
        state: Arc<AppState>,
        context: RequestContext,
        caller: Caller,
        id: String,
        changes: Watching,
        seen: (String, i64),
        first: Option<pb::Order>,
    }
    let watch = Watch {
        state,
        context,
        caller,
        id,
        changes,
        seen,
        first: Some(first),
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        if let Some(first) = watch.first.take() {
            return Some((Ok(order_event(first)), watch));
        }
        loop {
            tokio::select! {
                changed = watch.changes.receiver.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep(RESYNC) => {}
            }
            let Ok(order) =
                read_order(&watch.state, &watch.context, &watch.caller, &watch.id).await
            else {
                continue;
            };
            let now = (order.status.clone(), order.updated_at_millis);
            if now != watch.seen {
                watch.seen = now;
                return Some((Ok(order_event(order)), watch));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
