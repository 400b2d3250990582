//! The event bus as admins see it: topics, partitions, and how far each
//! consumer group of each service is behind (the console's lag view, built
//! in, for both the embedded log and Kafka).

use std::sync::Arc;

use axum::extract::State;
use kit::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ProblemDoc;
use crate::AppState;
use crate::auth::Admin;

pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(topics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionBody {
    pub partition: i32,
    /// The next offset to be written (records ever written to it).
    pub end: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicBody {
    pub name: String,
    pub partitions: Vec<PartitionBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPositionBody {
    /// The service the group belongs to.
    pub service: String,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will apply.
    pub position: i64,
    /// Records written but not yet applied by the group.
    pub lag: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusBody {
    /// `kafka` or `embedded`.
    pub bus: String,
    pub topics: Vec<TopicBody>,
    pub groups: Vec<GroupPositionBody>,
    /// Services whose positions could not be read just now.
    pub unreachable: Vec<String>,
}

#[derive(Deserialize)]
struct Positions {
    positions: Vec<Position>,
}

#[derive(Deserialize)]
struct Position {
    group: String,
    topic: String,
    partition: i32,
    next_offset: i64,
}

/// Topics, their partitions, and every consumer group's position and lag.
#[utoipa::path(get, path = "/api/v1/admin/topics", tag = "operations admin",
    security(("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, body = BusBody),
        (status = 403, description = "`forbidden`: not an admin.", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`: the bus does not answer.", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn topics(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<axum::Json<BusBody>, Problem> {
    let described = state.bus.describe_topics().await.map_err(|error| {
        tracing::warn!(%error, "cannot describe the topics");
        Problem::unavailable("The event bus does not answer. Try again in a moment.")
    })?;
    let asks = state.services.iter().map(|service| {
        let client = state.http.clone();
        async move {
            let positions = client
                .get(format!("{}/consumer-positions", service.url))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())?
                .json::<Positions>()
                .await
                .ok()?;
            Some((service.name.clone(), positions.positions))
        }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut groups = Vec::new();
    let mut unreachable = Vec::new();
    for (service, answer) in state.services.iter().zip(answers) {
        let Some((name, positions)) = answer else {
            unreachable.push(service.name.clone());
            continue;
        };
        for position in positions {
            let end = described
                .iter()
                .find(|t| t.name == position.topic)
                .and_then(|t| {
                    t.partition_ends
                        .get(usize::try_from(position.partition).ok()?)
                })
                .copied()
                .unwrap_or(position.next_offset);
            groups.push(GroupPositionBody {
                service: name.clone(),
                group: position.group,
                topic: position.topic,
                partition: position.partition,
                position: position.next_offset,
                lag: (end - position.next_offset).max(0),
            });
        }
    }
    Ok(axum::Json(BusBody {
        bus: state.bus.kind().to_owned(),
        topics: described
            .into_iter()
            .map(|t| TopicBody {
                name: t.name,
                partitions: t
                    .partition_ends
                    .into_iter()
                    .enumerate()
                    .map(|(p, end)| PartitionBody {
                        partition: i32::try_from(p).unwrap_or(i32::MAX),
                        end,
                    })
                    .collect(),
            })
            .collect(),
        groups,
        unreachable,
    }))
}
