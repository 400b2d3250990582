//! The services behind the gateway, reached over gRPC.
//!
//! Channels connect lazily and reconnect on their own, so the gateway
//! starts before (and survives restarts of) the services it fronts. Every
//! call carries the request's trace context and request id, and a failed
//! call becomes the problem the service meant, or an opaque 502/503/504.

use std::time::Duration;

use contracts::grpc::GrpcChannel;
use contracts::grpc::analytics::v1::analytics_client::AnalyticsClient;
use contracts::grpc::catalog::v1::catalog_client::CatalogClient;
use contracts::grpc::inventory::v1::inventory_client::InventoryClient;
use contracts::grpc::notifications::v1::notifications_client::NotificationsClient;
use contracts::grpc::orders::v1::orders_client::OrdersClient;
use contracts::grpc::payments::v1::payments_client::PaymentsClient;
use contracts::grpc::users::v1::accounts_client::AccountsClient;
use contracts::grpc::users::v1::payment_methods_client::PaymentMethodsClient;
use kit::http::RequestContext;
use kit::local::LocalServices;
use kit::problem::Problem;
use tonic::metadata::MetadataValue;

use crate::Upstream;

#[derive(Clone)]
pub struct Upstreams {
    pub accounts: AccountsClient<GrpcChannel>,
    pub payment_methods: PaymentMethodsClient<GrpcChannel>,
    pub catalog: CatalogClient<GrpcChannel>,
    pub inventory: InventoryClient<GrpcChannel>,
    pub orders: OrdersClient<GrpcChannel>,
    pub payments: PaymentsClient<GrpcChannel>,
    pub notifications: NotificationsClient<GrpcChannel>,
    pub analytics: AnalyticsClient<GrpcChannel>,
}

impl Upstreams {
    /// Channels to every upstream; those in `local` (this process) are
    /// called without the network.
    pub fn connect(
        upstreams: &[Upstream],
        timeout: Duration,
        local: &LocalServices,
    ) -> anyhow::Result<Upstreams> {
        let channel = |name: &str| -> anyhow::Result<GrpcChannel> {
            let upstream = upstreams.iter().find(|u| u.name == name).ok_or_else(|| {
                anyhow::anyhow!("the gateway has no address for the {name} service")
            })?;
            contracts::grpc::lazy_channel(
                &upstream.url,
                timeout,
                &format!("services.{name}.url"),
                local,
            )
            .map_err(anyhow::Error::msg)
        };
        let users = channel("users")?;
        Ok(Upstreams {
            accounts: AccountsClient::new(users.clone()),
            payment_methods: PaymentMethodsClient::new(users),
            catalog: CatalogClient::new(channel("catalog")?),
            inventory: InventoryClient::new(channel("inventory")?),
            orders: OrdersClient::new(channel("orders")?),
            payments: PaymentsClient::new(channel("payments")?),
            notifications: NotificationsClient::new(channel("notifications")?),
            analytics: AnalyticsClient::new(channel("analytics")?),
        })
    }
}

/// A gRPC request in the trace of `context`, carrying its request id.
pub fn request<T>(context: &RequestContext, message: T) -> tonic::Request<T> {
    let mut request = contracts::grpc::with_trace(message, &context.trace);
    if let Ok(value) = MetadataValue::try_from(context.request_id.as_str()) {
        request.metadata_mut().insert("x-request-id", value);
    }
    request
}

/// The answer of a call to `service`, or the problem to give the client.
pub fn answer<T>(
    service: &str,
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, Problem> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| Problem::from_status(service, &status))
}
