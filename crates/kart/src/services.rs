//! The eight services, by name.

use kit::Service;
use kit::config::Settings;

/// Every service, gateway first.
pub const SERVICE_NAMES: &[&str] = &[
    "gateway",
    "users",
    "catalog",
    "inventory",
    "orders",
    "payments",
    "notifications",
    "analytics",
];

/// Which services each service calls over gRPC: it is given their URLs,
/// and a deployment of it must set them.
fn calls(name: &str) -> &'static [&'static str] {
    match name {
        "gateway" => &SERVICE_NAMES[1..],
        "orders" => &["users", "catalog"],
        "payments" => &["users"],
        _ => &[],
    }
}

/// The service called `name`, given the URLs of the services it calls
/// from `settings`.
pub fn service_by_name(name: &str, settings: &Settings) -> anyhow::Result<Box<dyn Service>> {
    let url = |service: &str| url_of(service, settings);
    Ok(match name {
        "gateway" => Box::new(gateway::Gateway {
            upstreams: calls("gateway")
                .iter()
                .map(|n| gateway::Upstream {
                    name: (*n).to_owned(),
                    url: url(n),
                })
                .collect(),
        }),
        "users" => Box::new(users::Users),
        "catalog" => Box::new(catalog::Catalog),
        "inventory" => Box::new(inventory::Inventory),
        "orders" => Box::new(orders::Orders {
            catalog_url: url("catalog"),
            users_url: url("users"),
        }),
        "payments" => Box::new(payments::Payments {
            users_url: url("users"),
        }),
        "notifications" => Box::new(notifications::Notifications),
        "analytics" => Box::new(analytics::Analytics),
        other => return Err(crate::unknown_service(other)),
    })
}

/// Where `service` is reached: its configured URL, or this host and its
/// (configured or default) port.
pub(crate) fn url_of(service: &str, settings: &Settings) -> String {
    let default_port = service_by_name(service, settings).map_or(0, |s| s.default_port());
    settings.service_url(service, default_port)
}

/// The `KART__…` variables a distributed deployment of `name` must set:
/// every service finds the broker and binds beyond loopback; a service with
/// a database needs its URL; the gateway needs each upstream's URL. The
/// deployment checks hold Compose and Kubernetes to this list.
pub fn deployment_env(name: &str, settings: &Settings) -> anyhow::Result<Vec<String>> {
    let service = service_by_name(name, settings)?;
    let mut keys = vec![
        "KART__BUS__KIND".to_owned(),
        "KART__BUS__BROKERS".to_owned(),
        "KART__HTTP__HOST".to_owned(),
    ];
    if service.migrations().is_some() {
        keys.push("KART__DATABASE__URL".to_owned());
    }
    if name == "gateway" {
        // Every replica signs and checks access tokens with the same key.
        keys.push("KART__AUTH__JWT_SECRET".to_owned());
    }
    for called in calls(name) {
        keys.push(format!("KART__SERVICES__{}__URL", called.to_uppercase()));
    }
    Ok(keys)
}

/// Whether the `kart serve <service>` started on `url` is ready: `false`
/// while nothing answers ready there yet, an error when the service that
/// answers is another one (its port given twice, or held by another
/// process), which would otherwise pass for the one started.
pub async fn ready_as(client: &reqwest::Client, url: &str, service: &str) -> anyhow::Result<bool> {
    let ready = client
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success());
    if !ready {
        return Ok(false);
    }
    let health: serde_json::Value = client
        .get(format!("{url}/healthz"))
        .send()
        .await?
        .json()
        .await?;
    match health["service"].as_str() {
        Some(answered) if answered == service => Ok(true),
        answered => anyhow::bail!(
            "{url} answered as {}, not {service}",
            answered.unwrap_or("something that is not a Kart service")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn ready_as_tells_the_service_started_from_another_on_its_port() {
        let (listener, addr) = kit::http::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("a port");
        let router = kit::http::finish_router(
            "inventory",
            Default::default(),
            kit::metrics::Metrics::new("inventory"),
            kit::http::Readiness {
                db: None,
                bus: None,
            },
            Duration::from_secs(5),
            1024,
            None,
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(kit::http::serve(listener, router, shutdown.clone()));
        let client = reqwest::Client::new();
        let url = format!("http://{addr}");

        assert!(
            ready_as(&client, &url, "inventory")
                .await
                .expect("inventory")
        );
        let error = ready_as(&client, &url, "catalog")
            .await
            .expect_err("inventory is not the catalog");
        assert_eq!(
            error.to_string(),
            format!("{url} answered as inventory, not catalog")
        );

        shutdown.cancel();
        server.await.expect("joined").expect("served");
        assert!(
            !ready_as(&client, &url, "inventory")
                .await
                .expect("nothing there"),
            "a port nothing answers on is not ready yet"
        );
    }
}
