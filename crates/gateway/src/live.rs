//! Live order status for browsers and the bench: server-sent events.
//!
//! Each gateway process reads `order.events` in a consumer group of its own
//! (every replica must see every order's events), starting at the topics'
//! ends, and wakes the streams watching each order that moved.
//! `GET /api/v1/orders/{id}/stream` then sends the order as JSON when the
//! stream opens and again each time the order changes. The stream first
//! reads the order from the orders service, which checks the caller owns
//! it, so the stream shows exactly what `GET /api/v1/orders/{id}` would.
//! After that, a status event carries the step it announces (history
//! entry, money, failure code: [`OrderChangeV1`]), and the stream applies
//! it to its copy instead of reading the order again, a gRPC call and a
//! full order read in the orders database per step (BENCHMARKS.md, stop
//! 29, gives what that saves). Where the copy cannot be brought up to
//! date that way (the event carries no step, or the copy missed one, such as
//! a history note no event announces) the stream reads the order. A slow
//! re-read every few seconds covers an announcement lost to a lagging
//! receiver or a bus hiccup, and the steps that come with no event.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use contracts::Event as _;
use contracts::events::{OrderChangeV1, OrderCreatedV1, carried_order_change};
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

/// How many of an order's latest announcements its streams can catch up
/// on. A stream that fell further behind reads the order.
const KEPT_ANNOUNCEMENTS: usize = 8;

/// Watchers per order id: an announcement wakes only the streams of the
/// order that moved, not every open stream.
#[derive(Clone, Default)]
pub struct OrderChanges {
    watchers: Arc<Mutex<HashMap<String, Watched>>>,
}

/// An order's announcements and how many streams watch it.
type Watched = (watch::Sender<Announcements>, usize);

/// An order's latest announcements, numbered from 1 as they arrived, each
/// with the step its event carried (`None`: the event carried none).
#[derive(Debug, Default)]
struct Announcements {
    latest: u64,
    kept: VecDeque<(u64, Option<Arc<OrderChangeV1>>)>,
}

impl Announcements {
    fn push(&mut self, change: Option<OrderChangeV1>) {
        self.latest += 1;
        if self.kept.len() == KEPT_ANNOUNCEMENTS {
            self.kept.pop_front();
        }
        self.kept.push_back((self.latest, change.map(Arc::new)));
    }

    /// The steps announced after announcement `after`, in order; `None` if
    /// one of them carried no step or is no longer kept.
    fn steps_after(&self, after: u64) -> Option<Vec<Arc<OrderChangeV1>>> {
        let oldest_kept = self.kept.front().map_or(self.latest + 1, |(n, _)| *n);
        if after + 1 < oldest_kept {
            return None;
        }
        self.kept
            .iter()
            .filter(|(n, _)| *n > after)
            .map(|(_, change)| change.clone())
            .collect()
    }
}

/// A stream's registration; dropping it unregisters.
pub struct Watching {
    changes: OrderChanges,
    order_id: String,
    receiver: watch::Receiver<Announcements>,
    /// The last announcement this stream has taken in.
    heard: u64,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut watchers = self.changes.watchers();
        if let Some((_, count)) = watchers.get_mut(&self.order_id) {
            *count -= 1;
            if *count == 0 {
                watchers.remove(&self.order_id);
            }
        }
    }
}

impl OrderChanges {
    /// The watched orders. A poisoned lock is taken as it is: nothing done
    /// under it is expected to panic, a map left by one would at worst keep
    /// an entry that no stream holds, and refusing it would cut every
    /// stream off its announcements.
    fn watchers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `order_id`.
    pub fn watch(&self, order_id: &str) -> Watching {
        let receiver = {
            let mut watchers = self.watchers();
            let entry = watchers
                .entry(order_id.to_owned())
                .or_insert_with(|| (watch::channel(Announcements::default()).0, 0));
            entry.1 += 1;
            entry.0.subscribe()
        };
        // What was announced before the stream's first read is in that read.
        let heard = receiver.borrow().latest;
        Watching {
            changes: self.clone(),
            order_id: order_id.to_owned(),
            receiver,
            heard,
        }
    }

    /// Wakes the streams watching `order_id`, if any, with the step the
    /// event carried. The event is decoded only if someone watches.
    fn announce(&self, order_id: &str, payload: &[u8]) {
        if let Some((sender, _)) = self.watchers().get(order_id) {
            let change = carried_order_change(payload);
            sender.send_modify(|announcements| announcements.push(change));
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
                    self.announce(&delivery.key, &delivery.payload);
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

/// Brings `order` up to date with `step`, if `step` is the entry after its
/// history's last or already in it; `false` if `order` missed a step.
fn apply_step(order: &mut pb::Order, step: &OrderChangeV1) -> bool {
    let shown = u64::try_from(order.history.len()).unwrap_or(u64::MAX);
    if step.seq <= shown {
        return true;
    }
    if step.seq != shown + 1 {
        return false;
    }
    let at_millis = step.at.timestamp_millis();
    let money = |money: &contracts::events::Money| {
        Some(pb::Money {
            amount_minor: money.amount_minor,
            currency: money.currency.clone(),
        })
    };
    order.history.push(pb::Transition {
        from_status: step.from_status.clone(),
        to_status: step.to_status.clone(),
        cause: step.cause.clone(),
        detail: step.detail.clone(),
        at_millis,
    });
    order.status.clone_from(&step.to_status);
    order.failure_code.clone_from(&step.failure_code);
    order.captured = money(&step.captured);
    order.refunded = money(&step.refunded);
    order.refund_pending = money(&step.refund_pending);
    order.updated_at_millis = at_millis;
    true
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
    struct Watch {
        state: Arc<AppState>,
        context: RequestContext,
        caller: Caller,
        id: String,
        changes: Watching,
        /// The order as the stream knows it.
        shown: pb::Order,
        /// The status and update time last sent; `None` before the first.
        sent: Option<(String, i64)>,
    }
    let watch = Watch {
        state,
        context,
        caller,
        id,
        changes,
        shown: first,
        sent: None,
    };
    let stream = futures_util::stream::unfold(watch, |mut watch| async move {
        loop {
            let now = (watch.shown.status.clone(), watch.shown.updated_at_millis);
            if watch.sent.as_ref() != Some(&now) {
                watch.sent = Some(now);
                return Some((Ok(order_event(watch.shown.clone())), watch));
            }
            let announced = tokio::select! {
                changed = watch.changes.receiver.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    true
                }
                () = tokio::time::sleep(RESYNC) => false,
            };
            let caught_up = announced && {
                let announcements = watch.changes.receiver.borrow_and_update();
                let steps = announcements.steps_after(watch.changes.heard);
                watch.changes.heard = announcements.latest;
                drop(announcements);
                steps.is_some_and(|steps| {
                    steps.iter().all(|step| apply_step(&mut watch.shown, step))
                })
            };
            if !caught_up
                && let Ok(order) =
                    read_order(&watch.state, &watch.context, &watch.caller, &watch.id).await
            {
                watch.shown = order;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use contracts::events::Money;

    use super::*;

    fn eur(amount_minor: i64) -> Money {
        Money {
            amount_minor,
            currency: "EUR".into(),
        }
    }

    fn step(seq: u64, from: &str, to: &str, cause: &str, captured: i64) -> OrderChangeV1 {
        OrderChangeV1 {
            seq,
            from_status: from.into(),
            to_status: to.into(),
            cause: cause.into(),
            detail: String::new(),
            at: Utc
                .timestamp_millis_opt(1_000 + i64::try_from(seq).unwrap())
                .unwrap(),
            failure_code: String::new(),
            captured: eur(captured),
            refunded: eur(0),
            refund_pending: eur(0),
        }
    }

    /// A pending order as the orders service returns it: one history entry.
    fn pending() -> pb::Order {
        pb::Order {
            id: "ord_1".into(),
            status: "PENDING".into(),
            history: vec![pb::Transition {
                from_status: String::new(),
                to_status: "PENDING".into(),
                cause: "created".into(),
                detail: String::new(),
                at_millis: 1_000,
            }],
            updated_at_millis: 1_000,
            ..pb::Order::default()
        }
    }

    #[test]
    fn the_next_step_brings_the_copy_up_to_date() {
        let mut order = pending();
        assert!(apply_step(
            &mut order,
            &step(2, "PENDING", "RESERVED", "stock_reserved", 0)
        ));
        assert!(apply_step(
            &mut order,
            &step(3, "RESERVED", "PAID", "payment_captured", 900)
        ));
        assert_eq!(order.status, "PAID");
        assert_eq!(order.updated_at_millis, 1_003);
        assert_eq!(order.captured.as_ref().map(|m| m.amount_minor), Some(900));
        let causes: Vec<&str> = order.history.iter().map(|t| t.cause.as_str()).collect();
        assert_eq!(causes, ["created", "stock_reserved", "payment_captured"]);

        // A step the copy already holds changes nothing.
        let before = order.clone();
        assert!(apply_step(
            &mut order,
            &step(2, "PENDING", "RESERVED", "stock_reserved", 0)
        ));
        assert_eq!(order, before);
    }

    #[test]
    fn a_copy_that_missed_a_step_is_not_patched() {
        let mut order = pending();
        let before = order.clone();
        assert!(!apply_step(
            &mut order,
            &step(3, "RESERVED", "PAID", "payment_captured", 900)
        ));
        assert_eq!(order, before);
    }

    /// A panic while the watcher map was held (poisoning its lock) must not
    /// cut the streams off their announcements.
    #[tokio::test]
    async fn streams_keep_hearing_after_the_watcher_map_is_poisoned() {
        let changes = OrderChanges::default();
        let poisoner = changes.clone();
        let panicked = std::thread::spawn(move || {
            let _held = poisoner.watchers.lock().unwrap();
            panic!("a panic while the map is held");
        })
        .join();
        assert!(panicked.is_err() && changes.watchers.is_poisoned());

        let mut watching = changes.watch("ord_1");
        let payload = serde_json::to_vec(&serde_json::json!({
            "order_id": "ord_1",
            "change": step(2, "PENDING", "RESERVED", "stock_reserved", 0),
        }))
        .unwrap();
        changes.announce("ord_1", &payload);
        tokio::time::timeout(Duration::from_secs(5), watching.receiver.changed())
            .await
            .expect("announced within 5 s")
            .expect("the announcements' sender is alive");
        let steps = watching.receiver.borrow_and_update().steps_after(0);
        assert_eq!(
            steps.map(|s| s.iter().map(|s| s.seq).collect::<Vec<_>>()),
            Some(vec![2])
        );

        drop(watching);
        assert!(
            changes.watchers().is_empty(),
            "the last stream gone, the order is unwatched"
        );
    }

    #[test]
    fn a_stream_catches_up_only_on_kept_announcements_that_carry_steps() {
        let mut announcements = Announcements::default();
        assert_eq!(announcements.steps_after(0).map(|s| s.len()), Some(0));
        announcements.push(Some(step(2, "PENDING", "RESERVED", "stock_reserved", 0)));
        announcements.push(Some(step(3, "RESERVED", "PAID", "payment_captured", 900)));
        let seqs = |steps: Option<Vec<Arc<OrderChangeV1>>>| {
            steps.map(|steps| steps.iter().map(|s| s.seq).collect::<Vec<_>>())
        };
        assert_eq!(seqs(announcements.steps_after(0)), Some(vec![2, 3]));
        assert_eq!(seqs(announcements.steps_after(1)), Some(vec![3]));

        // An event without a step: whoever has not heard it must read.
        announcements.push(None);
        assert_eq!(seqs(announcements.steps_after(1)), None);
        assert_eq!(seqs(announcements.steps_after(3)), Some(vec![]));

        // Announcements no longer kept: a stream that missed them must read.
        for seq in 4..20 {
            announcements.push(Some(step(seq, "PAID", "PAID", "note", 900)));
        }
        assert_eq!(announcements.latest, 19);
        assert_eq!(seqs(announcements.steps_after(18)), Some(vec![19]));
        let oldest_kept = 19 - u64::try_from(KEPT_ANNOUNCEMENTS).unwrap() + 1;
        assert_eq!(
            announcements.steps_after(oldest_kept - 1).map(|s| s.len()),
            Some(KEPT_ANNOUNCEMENTS)
        );
        assert_eq!(seqs(announcements.steps_after(oldest_kept - 2)), None);
    }
}
