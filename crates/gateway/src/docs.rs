//! The API's OpenAPI 3.1 document, generated from the handlers and types
//! (so it cannot drift from the code), and a reference page rendered from
//! it on the server: no script, no CDN, works offline.

use std::fmt::Write;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, OpenApi as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Kart API",
        description = "Kart's public REST API. Errors are RFC 9457 `application/problem+json` with a stable `code` and, for validation errors, the `field` at fault. Every response echoes `x-request-id`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Accounts and sessions."),
        (name = "payment methods", description = "The signed-in user's saved cards."),
        (name = "catalog", description = "Browsing and search."),
        (name = "catalog admin", description = "Editing the catalog (admin role)."),
        (name = "stock", description = "Availability."),
        (name = "stock admin", description = "Stock levels and adjustments (admin role)."),
        (name = "orders", description = "Placing and following orders."),
        (name = "orders admin", description = "Every order; fulfil and refund (admin role)."),
        (name = "payments", description = "Payment provider webhooks."),
        (name = "notifications admin", description = "The mailbox and dead letters, with replay (admin role)."),
        (name = "analytics admin", description = "Per-minute figures and their rebuild (admin role)."),
        (name = "operations admin", description = "Topics, partitions and consumer-group lag (admin role)."),
    ),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::ACCESS_COOKIE))),
        );
    }
}

pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

pub use kit::http::escape_html as escape;

fn ref_name<T>(item: &RefOr<T>) -> Option<String> {
    match item {
        RefOr::Ref(r) => r.ref_location.rsplit('/').next().map(str::to_owned),
        RefOr::T(_) => None,
    }
}

fn operation_html(out: &mut String, method: &str, path: &str, op: &Operation) {
    let anchor = format!("{method}-{}", path.replace(['/', '{', '}'], "-"));
    let _ = write!(
        out,
        "<section id=\"{anchor}\"><h3><span class=\"m {method}\">{}</span> <code>{}</code></h3>",
        method.to_uppercase(),
        escape(path)
    );
    if let Some(summary) = &op.summary {
        let _ = write!(out, "<p><strong>{}</strong></p>", escape(summary));
    }
    if let Some(description) = &op.description {
        let _ = write!(out, "<p>{}</p>", escape(description));
    }
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        out.push_str("<p class=\"auth\">Needs a signed-in user: <code>Authorization: Bearer &lt;token&gt;</code> or the session cookie.</p>");
    }
    if let Some(parameters) = &op.parameters
        && !parameters.is_empty()
    {
        out.push_str("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>");
        for p in parameters {
            let location = serde_json::to_value(&p.parameter_in)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(&p.name),
                escape(&location),
                escape(p.description.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = &op.request_body {
        let schema = body
            .content
            .values()
            .next()
            .and_then(|c| c.schema.as_ref())
            .and_then(ref_name)
            .unwrap_or_else(|| "JSON".to_owned());
        let _ = write!(
            out,
            "<p>Body: <a href=\"#schema-{0}\"><code>{0}</code></a></p>",
            escape(&schema)
        );
    }
    out.push_str("<table><tr><th>status</th><th>body</th><th>meaning</th></tr>");
    for (status, response) in &op.responses.responses {
        let (description, schema) = match response {
            RefOr::T(r) => (
                r.description.clone(),
                r.content
                    .values()
                    .next()
                    .and_then(|c| c.schema.as_ref())
                    .and_then(ref_name),
            ),
            RefOr::Ref(_) => (String::new(), None),
        };
        let schema = schema
            .map(|s| format!("<a href=\"#schema-{0}\"><code>{0}</code></a>", escape(&s)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{schema}</td><td>{}</td></tr>",
            escape(status),
            escape(&description)
        );
    }
    out.push_str("</table></section>");
}

/// The reference page.
pub fn html(openapi: &OpenApi) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Kart API reference</title><style>");
    out.push_str("body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#1a1a1a}code,pre{font-family:ui-monospace,monospace;font-size:.9em}pre{background:#f4f4f4;padding:.75rem;overflow:auto}section{border-top:1px solid #ddd;padding-top:.5rem}table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}.m{display:inline-block;min-width:4.5rem;font-size:.8em;color:#fff;padding:.1rem .4rem;border-radius:3px;text-align:center}.get{background:#1565c0}.post{background:#2e7d32}.patch{background:#8d5a00}.delete{background:#b71c1c}.auth{color:#5d4037}a{color:#0b57d0}");
    out.push_str("</style></head><body><header><h1>Kart API reference</h1>");
    if let Some(description) = &openapi.info.description {
        let _ = write!(out, "<p>{}</p>", escape(description));
    }
    out.push_str("<p>Machine-readable: <a href=\"/api/openapi.json\"><code>/api/openapi.json</code></a> (OpenAPI 3.1).</p></header><nav><h2>Endpoints</h2><ul>");
    let methods = |item: &utoipa::openapi::PathItem| {
        [
            ("get", item.get.clone()),
            ("post", item.post.clone()),
            ("patch", item.patch.clone()),
            ("put", item.put.clone()),
            ("delete", item.delete.clone()),
        ]
        .into_iter()
        .filter_map(|(m, op)| op.map(|op| (m, op)))
        .collect::<Vec<_>>()
    };
    for (path, item) in &openapi.paths.paths {
        for (method, op) in methods(item) {
            let anchor = format!("{method}-{}", path.replace(['/', '{', '}'], "-"));
            let _ = write!(
                out,
                "<li><a href=\"#{anchor}\"><span class=\"m {method}\">{}</span> <code>{}</code></a> {}</li>",
                method.to_uppercase(),
                escape(path),
                escape(op.summary.as_deref().unwrap_or(""))
            );
        }
    }
    out.push_str("</ul></nav><main><h2>Operations</h2>");
    for (path, item) in &openapi.paths.paths {
        for (method, op) in methods(item) {
            operation_html(&mut out, method, path, &op);
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(components) = &openapi.components {
        for (name, schema) in &components.schemas {
            let json = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                out,
                "<section id=\"schema-{0}\"><h3><code>{0}</code></h3><pre>{1}</pre></section>",
                escape(name),
                escape(&json)
            );
        }
    }
    out.push_str("</main></body></html>");
    out
}
