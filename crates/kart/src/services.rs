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

/// The service called `name`. The gateway is given the URLs of the others
/// from `settings`.
pub fn service_by_name(name: &str, settings: &Settings) -> anyhow::Result<Box<dyn Service>> {
    Ok(match name {
        "gateway" => Box::new(gateway::Gateway {
            upstreams: SERVICE_NAMES
                .iter()
                .filter(|n| **n != "gateway")
                .filter_map(|n| {
                    let service = domain_service(n)?;
                    Some(gateway::Upstream {
                        name: (*n).to_owned(),
                        url: settings.service_url(n, service.default_port()),
                    })
                })
                .collect(),
        }),
        other => domain_service(other).ok_or_else(|| crate::unknown_service(other))?,
    })
}

fn domain_service(name: &str) -> Option<Box<dyn Service>> {
    Some(match name {
        "users" => Box::new(users::Users),
        "catalog" => Box::new(catalog::Catalog),
        "inventory" => Box::new(inventory::Inventory),
        "orders" => Box::new(orders::Orders),
        "payments" => Box::new(payments::Payments),
        "notifications" => Box::new(notifications::Notifications),
        "analytics" => Box::new(analytics::Analytics),
        _ => return None,
    })
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
        for upstream in SERVICE_NAMES.iter().filter(|n| **n != "gateway") {
            keys.push(format!("KART__SERVICES__{}__URL", upstream.to_uppercase()));
        }
    }
    Ok(keys)
}
