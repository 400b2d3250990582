//! The demo catalog `kart up` puts in an empty shop: enough products, in
//! enough categories, for search, facets and checkout to be worth trying.
//!
//! It goes in through the same gRPC APIs an admin uses, so it follows
//! every rule a real product does (and emits the same events).

use contracts::grpc::catalog::v1 as catalog_pb;
use contracts::grpc::catalog::v1::catalog_client::CatalogClient;
use contracts::grpc::inventory::v1 as inventory_pb;
use contracts::grpc::inventory::v1::inventory_client::InventoryClient;

/// SKU, name, category, price in cents (EUR), description.
const PRODUCTS: &[(&str, &str, &str, i64, &str)] = &[
    (
        "BEANS-ETHIOPIA",
        "Ethiopia Yirgacheffe Beans",
        "coffee",
        1490,
        "Light roast with jasmine and bergamot notes. 250 g, whole bean.",
    ),
    (
        "BEANS-COLOMBIA",
        "Colombia Huila Beans",
        "coffee",
        1290,
        "Medium roast, caramel and red apple. 250 g, whole bean.",
    ),
    (
        "BEANS-SUMATRA",
        "Sumatra Mandheling Beans",
        "coffee",
        1390,
        "Dark roast, earthy and full-bodied. 250 g, whole bean.",
    ),
    (
        "BEANS-DECAF",
        "Swiss Water Decaf Beans",
        "coffee",
        1350,
        "Chemical-free decaf with cocoa notes. 250 g, whole bean.",
    ),
    (
        "BEANS-ESPRESSO",
        "House Espresso Blend",
        "coffee",
        1590,
        "Chocolate and hazelnut, made for espresso. 500 g.",
    ),
    (
        "COFFEE-COLDBREW",
        "Cold Brew Coarse Grind",
        "coffee",
        1190,
        "Pre-ground for 18-hour cold brew. 500 g.",
    ),
    (
        "GRINDER-BURR",
        "Conical Burr Grinder",
        "coffee-gear",
        8900,
        "40 grind settings from espresso to French press.",
    ),
    (
        "KETTLE-GOOSENECK",
        "Gooseneck Pour-Over Kettle",
        "coffee-gear",
        5400,
        "Temperature-controlled electric kettle with a precise spout.",
    ),
    (
        "DRIPPER-CERAMIC",
        "Ceramic Pour-Over Dripper",
        "coffee-gear",
        2400,
        "Cone dripper for one to four cups.",
    ),
    (
        "PRESS-FRENCH",
        "Stainless French Press",
        "coffee-gear",
        3900,
        "Double-walled, keeps coffee hot for an hour. 1 litre.",
    ),
    (
        "SCALE-COFFEE",
        "Coffee Scale with Timer",
        "coffee-gear",
        3200,
        "0.1 g precision and a built-in brew timer.",
    ),
    (
        "FILTERS-PAPER",
        "Paper Filters, 100 Pack",
        "coffee-gear",
        690,
        "Unbleached cone filters.",
    ),
    (
        "MUG-STONEWARE",
        "Stoneware Mug",
        "kitchen",
        1800,
        "Hand-glazed 350 ml mug, dishwasher safe.",
    ),
    (
        "MUG-TRAVEL",
        "Insulated Travel Mug",
        "kitchen",
        2600,
        "Leak-proof lid, keeps drinks hot for six hours.",
    ),
    (
        "TEAPOT-CAST",
        "Cast Iron Teapot",
        "kitchen",
        4900,
        "Enamelled inside, with a steel infuser. 800 ml.",
    ),
    (
        "KNIFE-CHEF",
        "Chef's Knife, 20 cm",
        "kitchen",
        7900,
        "Forged stainless steel with a full tang.",
    ),
    (
        "BOARD-WALNUT",
        "Walnut Cutting Board",
        "kitchen",
        5900,
        "End-grain, gentle on knife edges.",
    ),
    (
        "PAN-CASTIRON",
        "Cast Iron Skillet, 26 cm",
        "kitchen",
        4500,
        "Pre-seasoned; oven, grill and induction safe.",
    ),
    (
        "APRON-CANVAS",
        "Canvas Apron",
        "kitchen",
        2900,
        "Waxed canvas with leather straps.",
    ),
    (
        "JAR-SET",
        "Glass Storage Jars, Set of 3",
        "kitchen",
        2200,
        "Airtight bamboo lids for beans, tea and grains.",
    ),
    (
        "BOOK-RUST",
        "Programming in Rust",
        "books",
        4200,
        "A practical guide to safe, fast systems code.",
    ),
    (
        "BOOK-DDIA",
        "Designing Data Systems",
        "books",
        4600,
        "Reliability, scalability and maintainability, explained.",
    ),
    (
        "BOOK-COFFEE",
        "The World Atlas of Coffee",
        "books",
        3500,
        "From bean to cup, country by country.",
    ),
    (
        "BOOK-BREAD",
        "Flour Water Salt Yeast",
        "books",
        3200,
        "The fundamentals of artisan bread and pizza.",
    ),
    (
        "BOOK-SCIFI",
        "The Left Hand of Darkness",
        "books",
        1400,
        "Classic science fiction, paperback.",
    ),
    (
        "BOOK-HIKING",
        "Trails of the Alps",
        "books",
        2800,
        "Fifty day hikes with maps and photographs.",
    ),
    (
        "HEADPHONES-ANC",
        "Noise-Cancelling Headphones",
        "audio",
        24900,
        "Over-ear, 30-hour battery, USB-C.",
    ),
    (
        "EARBUDS-SPORT",
        "Wireless Sport Earbuds",
        "audio",
        8900,
        "Sweat-resistant with secure ear hooks.",
    ),
    (
        "SPEAKER-PORTABLE",
        "Portable Bluetooth Speaker",
        "audio",
        6900,
        "Waterproof, 12 hours of play.",
    ),
    (
        "TURNTABLE-BELT",
        "Belt-Drive Turntable",
        "audio",
        29900,
        "Built-in preamp, plays 33 and 45 rpm.",
    ),
    (
        "DAC-USB",
        "USB Headphone Amplifier",
        "audio",
        11900,
        "24-bit DAC for desktop listening.",
    ),
    (
        "TENT-2P",
        "Two-Person Backpacking Tent",
        "outdoor",
        27900,
        "1.6 kg, freestanding, three-season.",
    ),
    (
        "BAG-SLEEPING",
        "Down Sleeping Bag",
        "outdoor",
        21900,
        "Comfort rating 0 °C, packs to the size of a loaf.",
    ),
    (
        "STOVE-CAMP",
        "Compact Camping Stove",
        "outdoor",
        4900,
        "Boils a litre in three minutes.",
    ),
    (
        "BOTTLE-STEEL",
        "Insulated Steel Bottle",
        "outdoor",
        2900,
        "750 ml, cold for 24 hours.",
    ),
    (
        "LAMP-HEAD",
        "Rechargeable Headlamp",
        "outdoor",
        3900,
        "400 lumens with a red night mode.",
    ),
    (
        "PACK-DAY",
        "25 L Day Pack",
        "outdoor",
        8900,
        "Ventilated back panel and rain cover.",
    ),
    (
        "NOTEBOOK-DOT",
        "Dotted Notebook A5",
        "stationery",
        1600,
        "192 numbered pages, 100 g/m² paper.",
    ),
    (
        "PEN-FOUNTAIN",
        "Fountain Pen, Medium Nib",
        "stationery",
        3400,
        "Steel nib with a converter for bottled ink.",
    ),
    (
        "INK-BLUE",
        "Blue-Black Ink, 50 ml",
        "stationery",
        1200,
        "Water-resistant once dry.",
    ),
    (
        "PENCILS-SET",
        "Graphite Pencils, Set of 12",
        "stationery",
        1100,
        "From 4H to 8B for drawing.",
    ),
    (
        "PLANNER-WEEK",
        "Undated Weekly Planner",
        "stationery",
        2100,
        "Linen cover, lies flat.",
    ),
    (
        "LAMP-DESK",
        "LED Desk Lamp",
        "home",
        5900,
        "Dimmable with adjustable colour temperature.",
    ),
    (
        "BLANKET-WOOL",
        "Merino Wool Blanket",
        "home",
        11900,
        "Woven in Portugal. 130 × 180 cm.",
    ),
    (
        "CANDLE-CEDAR",
        "Cedar Soy Candle",
        "home",
        2400,
        "50-hour burn, cotton wick.",
    ),
    (
        "PLANTER-CERAMIC",
        "Ceramic Planter",
        "home",
        2700,
        "With drainage hole and saucer. 15 cm.",
    ),
    (
        "CLOCK-WALL",
        "Minimal Wall Clock",
        "home",
        3900,
        "Silent sweep movement, 30 cm.",
    ),
    (
        "TSHIRT-ORGANIC",
        "Organic Cotton T-Shirt",
        "apparel",
        2900,
        "Heavyweight jersey, regular fit.",
    ),
    (
        "HOODIE-FLEECE",
        "Fleece Hoodie",
        "apparel",
        6900,
        "Brushed inside, recycled polyester.",
    ),
    (
        "SOCKS-WOOL",
        "Wool Hiking Socks, 3 Pairs",
        "apparel",
        2400,
        "Cushioned sole, merino blend.",
    ),
    (
        "CAP-BASEBALL",
        "Washed Cotton Cap",
        "apparel",
        2200,
        "Adjustable brass buckle.",
    ),
    (
        "JACKET-RAIN",
        "Packable Rain Jacket",
        "apparel",
        12900,
        "Waterproof, breathable, fits in its pocket.",
    ),
    (
        "PUZZLE-1000",
        "1000-Piece Jigsaw Puzzle",
        "games",
        2500,
        "A map of the night sky.",
    ),
    (
        "CHESS-WOOD",
        "Wooden Chess Set",
        "games",
        5900,
        "Folding board with weighted pieces.",
    ),
    (
        "CARDS-PLAYING",
        "Linen Playing Cards",
        "games",
        900,
        "Casino-quality finish.",
    ),
    (
        "GAME-STRATEGY",
        "Settlers Strategy Board Game",
        "games",
        4400,
        "Trade, build and settle; 3–4 players.",
    ),
];

/// Units of stock each demo product starts with.
const DEMO_STOCK: i64 = 100;

/// Fills an empty catalog; leaves one that has products alone. Returns how
/// many products it added.
pub async fn seed(catalog_url: &str, inventory_url: &str) -> anyhow::Result<usize> {
    let mut catalog = CatalogClient::connect(catalog_url.to_owned()).await?;
    let existing = catalog
        .list_products(catalog_pb::ListProductsRequest {
            include_archived: true,
            limit: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    if !existing.products.is_empty() {
        return Ok(0);
    }
    let mut inventory = InventoryClient::connect(inventory_url.to_owned()).await?;
    for (sku, name, category, price, description) in PRODUCTS {
        catalog
            .create_product(catalog_pb::CreateProductRequest {
                sku: (*sku).to_owned(),
                name: (*name).to_owned(),
                description: (*description).to_owned(),
                price: Some(catalog_pb::Money {
                    amount_minor: *price,
                    currency: "EUR".to_owned(),
                }),
                image_url: format!("/images/products/{}.svg", sku.to_lowercase()),
                category: (*category).to_owned(),
            })
            .await?;
        inventory
            .adjust_stock(inventory_pb::AdjustStockRequest {
                sku: (*sku).to_owned(),
                delta: DEMO_STOCK,
                reason: "demo catalog".to_owned(),
                actor: "kart up".to_owned(),
            })
            .await?;
    }
    Ok(PRODUCTS.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_is_big_enough_and_valid() {
        assert!(PRODUCTS.len() >= 50);
        let mut skus: Vec<&str> = PRODUCTS.iter().map(|p| p.0).collect();
        skus.sort_unstable();
        skus.dedup();
        assert_eq!(skus.len(), PRODUCTS.len(), "SKUs are unique");
        for (sku, name, category, price, _) in PRODUCTS {
            assert!(contracts::values::Sku::parse(sku).is_ok(), "{sku}");
            assert!(!name.is_empty() && *price > 0);
            assert!(category.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        }
    }
}
