//! Product pictures for the demo catalog: a generated SVG per product, so
//! the shop looks like a shop with nothing to download.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kit::problem::Problem;

/// `/images/products/{name}.svg`: a tile coloured by the name, with its
/// initials.
pub async fn product_image(Path(file): Path<String>) -> Response {
    let Some(name) = file.strip_suffix(".svg") else {
        return Problem::not_found("Product images are SVG files.").into_response();
    };
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Problem::not_found("There is no such image.").into_response();
    }
    let hash = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    });
    let hue = hash % 360;
    let initials: String = name
        .split('-')
        .filter_map(|part| part.chars().next())
        .take(2)
        .collect::<String>()
        .to_uppercase();
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 300\" role=\"img\" aria-label=\"{name}\">\
<rect width=\"400\" height=\"300\" fill=\"hsl({hue},55%,88%)\"/>\
<circle cx=\"200\" cy=\"150\" r=\"90\" fill=\"hsl({hue},45%,62%)\"/>\
<text x=\"200\" y=\"172\" font-family=\"system-ui,sans-serif\" font-size=\"64\" font-weight=\"700\" text-anchor=\"middle\" fill=\"#fff\">{initials}</text></svg>"
    );
    let mut response = svg.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}
