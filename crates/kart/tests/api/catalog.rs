//! Products: admin editing, public lists and search.

use std::time::{Duration, Instant};

use contracts::grpc::catalog::v1 as pb;
use contracts::grpc::catalog::v1::catalog_client::CatalogClient;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Storage, TestApp, test_settings};

pub async fn admins_create_update_and_archive_products(app: &TestApp) {
    let admin = app.admin().await;
    let created = app
        .product(&admin, "mug-blue", "Blue Mug", "Kitchen Ware", 1250)
        .await;
    assert_eq!(created["sku"], "MUG-BLUE", "SKUs are stored upper case");
    assert_eq!(created["category"], "kitchen-ware", "categories are slugs");
    assert_eq!(
        created["price"],
        json!({"amount_minor": 1250, "currency": "EUR"})
    );
    assert_eq!(created["active"], true);
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("prd_"));

    let fetched = app.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(fetched.expect(StatusCode::OK)["name"], "Blue Mug");

    let patched = app
        .call(
            Method::PATCH,
            &format!("/api/v1/admin/products/{id}"),
            Some(&admin.token),
            Some(json!({"name": "Cobalt Mug", "price": {"amount_minor": 1500, "currency": "eur"}})),
        )
        .await;
    let body = patched.expect(StatusCode::OK);
    assert_eq!(
        (
            body["name"].as_str(),
            body["price"]["amount_minor"].as_i64()
        ),
        (Some("Cobalt Mug"), Some(1500))
    );
    assert_eq!(body["price"]["currency"], "EUR");
    assert_eq!(
        body["description"], "Blue Mug, for tests.",
        "fields not sent are kept"
    );
    let found = app.get("/api/v1/products/search?q=cobalt", None).await;
    assert_eq!(
        found.expect(StatusCode::OK)["hits"][0]["product"]["id"],
        id,
        "search follows the change"
    );
    // The description still says "Blue Mug": one document, the new one.
    let by_description = app.get("/api/v1/products/search?q=blue", None).await;
    assert_eq!(by_description.expect(StatusCode::OK)["total"], 1);
    assert_eq!(
        by_description.body["hits"][0]["product"]["name"], "Cobalt Mug",
        "the old name is gone from the index"
    );

    let archived = app
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/products/{id}"),
            Some(&admin.token),
            None,
        )
        .await;
    assert_eq!(archived.expect(StatusCode::OK)["active"], false);
    app.get(&format!("/api/v1/products/{id}"), None)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    let admin_view = app
        .get(&format!("/api/v1/admin/products/{id}"), Some(&admin.token))
        .await;
    assert_eq!(admin_view.expect(StatusCode::OK)["active"], false);
    assert_eq!(
        app.get("/api/v1/products/search?q=cobalt", None).await.body["total"],
        0
    );
    let public = app
        .get("/api/v1/products?category=kitchen-ware", None)
        .await;
    assert!(
        public.expect(StatusCode::OK)["products"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let all = app
        .get(
            "/api/v1/admin/products?category=kitchen-ware&include_archived=true",
            Some(&admin.token),
        )
        .await;
    assert_eq!(all.expect(StatusCode::OK)["products"][0]["id"], id);
    // Back on sale.
    let restored = app
        .call(
            Method::PATCH,
            &format!("/api/v1/admin/products/{id}"),
            Some(&admin.token),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(restored.expect(StatusCode::OK)["active"], true);
    app.get(&format!("/api/v1/products/{id}"), None)
        .await
        .expect(StatusCode::OK);
    app.get("/api/v1/products/prd_nonexistent", None)
        .await
        .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
    app.call(
        Method::PATCH,
        "/api/v1/admin/products/prd_nonexistent",
        Some(&admin.token),
        Some(json!({"name": "x"})),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "not_found", None);
}

pub async fn customers_and_strangers_cannot_edit_the_catalog(app: &TestApp) {
    let admin = app.admin().await;
    let product = app
        .product(&admin, "LAMP-1", "Desk Lamp", "home", 3000)
        .await;
    let id = product["id"].as_str().unwrap();
    let customer = app.customer().await;
    let new_product = json!({"sku": "X-1", "name": "X", "price": {"amount_minor": 1, "currency": "EUR"}, "category": "x"});
    for (method, path, body) in [
        (Method::GET, "/api/v1/admin/products".to_owned(), None),
        (
            Method::POST,
            "/api/v1/admin/products".to_owned(),
            Some(new_product.clone()),
        ),
        (Method::GET, format!("/api/v1/admin/products/{id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/admin/products/{id}"),
            Some(json!({"name": "Hacked"})),
        ),
        (Method::DELETE, format!("/api/v1/admin/products/{id}"), None),
    ] {
        app.call(method.clone(), &path, Some(&customer.token), body.clone())
            .await
            .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
        app.call(method, &path, None, body).await.expect_problem(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            None,
        );
    }
    app.get("/api/v1/products?include_archived=true", None)
        .await
        .expect_problem(StatusCode::FORBIDDEN, "forbidden", None);
    let unchanged = app.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(unchanged.expect(StatusCode::OK)["name"], "Desk Lamp");
}

pub async fn product_lists_page_and_filter(app: &TestApp) {
    let admin = app.admin().await;
    let category = format!("paging-{}", &kit::testing::unique("c")[2..10]);
    for (i, price) in [500, 1500, 2500].iter().enumerate() {
        app.product(
            &admin,
            &format!("PAGE-{i}"),
            &format!("Paged product {i}"),
            &category,
            *price,
        )
        .await;
    }
    let first = app
        .get(
            &format!("/api/v1/products?category={category}&limit=2"),
            None,
        )
        .await;
    let body = first.expect(StatusCode::OK);
    let names: Vec<&str> = body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Paged product 2", "Paged product 1"],
        "newest first"
    );
    let cursor = body["next_cursor"].as_str().unwrap();
    let second = app
        .get(
            &format!("/api/v1/products?category={category}&limit=2&cursor={cursor}"),
            None,
        )
        .await;
    let body = second.expect(StatusCode::OK);
    assert_eq!(body["products"].as_array().unwrap().len(), 1);
    assert_eq!(body["products"][0]["name"], "Paged product 0");
    assert!(body["next_cursor"].is_null(), "the last page has no cursor");

    let priced = app
        .get(
            &format!("/api/v1/products?category={category}&min_price=1000&max_price=2000"),
            None,
        )
        .await;
    let body = priced.expect(StatusCode::OK);
    assert_eq!(body["products"].as_array().unwrap().len(), 1);
    assert_eq!(body["products"][0]["price"]["amount_minor"], 1500);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("min_price=-1", "min_price"),
        ("min_price=9&max_price=1", "min_price"),
        ("max_price=1.5", "max_price"),
        ("category=Not%20a%20slug!", "category"),
    ] {
        app.get(&format!("/api/v1/products?{query}"), None)
            .await
            .expect_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                Some(field),
            );
    }
}

pub async fn search_tolerates_typos_and_counts_categories(app: &TestApp) {
    let admin = app.admin().await;
    app.product(&admin, "BEANS-1", "Ethiopian Coffee Beans", "coffee", 1490)
        .await;
    app.product(&admin, "MUG-C", "Coffee Mug", "kitchen", 1800)
        .await;
    app.product(&admin, "KETTLE-G", "Gooseneck Kettle", "kitchen", 5400)
        .await;

    let exact = app.get("/api/v1/products/search?q=coffee", None).await;
    let body = exact.expect(StatusCode::OK);
    assert_eq!(body["total"], 2);
    assert_eq!(
        body["facets"],
        json!([{"category": "coffee", "count": 1}, {"category": "kitchen", "count": 1}])
    );
    assert!(body["hits"][0]["score"].as_f64().unwrap() > 0.0);

    let typo = app
        .get("/api/v1/products/search?q=gooseneck%20kettel", None)
        .await;
    assert_eq!(
        typo.expect(StatusCode::OK)["hits"][0]["product"]["sku"],
        "KETTLE-G"
    );
    let typing = app.get("/api/v1/products/search?q=ethio", None).await;
    assert_eq!(
        typing.expect(StatusCode::OK)["hits"][0]["product"]["sku"],
        "BEANS-1"
    );
    let narrowed = app
        .get("/api/v1/products/search?q=coffee&category=kitchen", None)
        .await;
    let body = narrowed.expect(StatusCode::OK);
    assert_eq!(body["total"], 1);
    assert_eq!(body["hits"][0]["product"]["sku"], "MUG-C");
    assert_eq!(
        body["facets"].as_array().unwrap().len(),
        2,
        "facets ignore the category filter"
    );

    app.get("/api/v1/products/search", None)
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("q"),
        );
    app.get(
        &format!("/api/v1/products/search?q={}", "a".repeat(201)),
        None,
    )
    .await
    .expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("q"),
    );
    app.get("/api/v1/products/search?q=mug&limit=500", None)
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("limit"),
        );
}

pub async fn catalog_input_errors_name_the_field(app: &TestApp) {
    let admin = app.admin().await;
    let valid = json!({"sku": "OK-1", "name": "Fine", "description": "", "price": {"amount_minor": 100, "currency": "EUR"}, "image_url": "https://cdn.example.com/a.png", "category": "misc"});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };
    for (body, field) in [
        (with("sku", json!("no spaces please")), "sku"),
        (with("sku", json!("")), "sku"),
        (with("name", json!("  ")), "name"),
        (with("name", json!("n".repeat(201))), "name"),
        (
            with("price", json!({"amount_minor": -5, "currency": "EUR"})),
            "price.amount_minor",
        ),
        (
            with("price", json!({"amount_minor": 5, "currency": "EURO"})),
            "price.currency",
        ),
        (
            with("price", json!({"amount_minor": "5", "currency": "EUR"})),
            "price.amount_minor",
        ),
        (with("image_url", json!("javascript:alert(1)")), "image_url"),
        (with("category", json!("")), "category"),
    ] {
        app.post("/api/v1/admin/products", Some(&admin.token), body)
            .await
            .expect_problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                Some(field),
            );
    }
    let mut no_price = valid.clone();
    no_price.as_object_mut().unwrap().remove("price");
    app.post("/api/v1/admin/products", Some(&admin.token), no_price)
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("price"),
        );
    let created = app
        .post("/api/v1/admin/products", Some(&admin.token), valid.clone())
        .await;
    let id = created.expect(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        "/api/v1/admin/products",
        Some(&admin.token),
        with("sku", json!("ok-1")),
    )
    .await
    .expect_problem(StatusCode::CONFLICT, "sku_taken", Some("sku"));
    let product_path = format!("/api/v1/admin/products/{id}");
    let patch = |body| app.call(Method::PATCH, &product_path, Some(&admin.token), Some(body));
    patch(json!({})).await.expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("body"),
    );
    patch(json!({"sku": "NEW"})).await.expect_problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        Some("sku"),
    );
    patch(json!({"price": {"amount_minor": 1, "currency": "XYZ"}}))
        .await
        .expect_problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("price.currency"),
        );
    let unchanged = app.get(&format!("/api/v1/products/{id}"), None).await;
    assert_eq!(
        unchanged.expect(StatusCode::OK)["price"]["amount_minor"],
        100
    );
}

/// The gateway keeps public catalog answers; a product changed without it
/// (by another gateway replica, or straight through the catalog) reaches
/// those answers through the product events, long before their time to
/// live runs out.
async fn a_change_made_elsewhere_reaches_the_gateway_cache(storage: Storage) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(storage, dir.path());
    settings.gateway.catalog_cache_ttl_ms = 600_000;
    let app = TestApp::spawn_with(dir, settings).await;
    let admin = app.admin().await;
    let product = app
        .product(&admin, "KETTLE-1", "Copper Kettle", "kitchen", 4000)
        .await;
    let id = product["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/products/{id}");
    let search = "/api/v1/products/search?q=kettle";
    // The product's own creation event drops kept answers too (twice, a
    // second apart): read until repeated reads are answered from the cache.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = cache_hits(&app).await;
        for _ in 0..2 {
            let page = app.get(&path, None).await;
            assert_eq!(page.expect(StatusCode::OK)["name"], "Copper Kettle");
            let found = app.get(search, None).await;
            assert_eq!(
                found.expect(StatusCode::OK)["hits"][0]["product"]["name"],
                "Copper Kettle"
            );
        }
        if cache_hits(&app).await - before >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "repeated reads are never answered from the gateway's cache"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut catalog = CatalogClient::connect(app.system().url("catalog").unwrap())
        .await
        .unwrap();
    catalog
        .update_product(pb::UpdateProductRequest {
            id: id.clone(),
            name: Some("Brass Kettle".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let name = app.get(&path, None).await.body["name"].clone();
        let hit = app.get(search, None).await.body["hits"][0]["product"]["name"].clone();
        if name == "Brass Kettle" && hit == "Brass Kettle" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway still answers {name} and {hit} 30 s after the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// The gateway's count of answers given from its catalog cache.
async fn cache_hits(app: &TestApp) -> u64 {
    let metrics = app.metrics(&app.url).await;
    metrics
        .lines()
        .find(|line| line.starts_with("kart_gateway_catalog_cache_hits_total"))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no cache hit counter on /metrics: {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_elsewhere_reaches_the_gateway_cache_embedded() {
    a_change_made_elsewhere_reaches_the_gateway_cache(Storage::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_elsewhere_reaches_the_gateway_cache_distributed() {
    a_change_made_elsewhere_reaches_the_gateway_cache(Storage::Distributed).await;
}
