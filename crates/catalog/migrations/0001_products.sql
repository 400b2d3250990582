-- Products. Prices are integer minor units plus an ISO 4217 currency.
-- Archived products stay (old orders name them) but are off sale.
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    image_url TEXT NOT NULL,
    category TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- The list's order (newest first) and its cursor.
CREATE INDEX products_by_created ON products (created_at DESC, id DESC);
CREATE INDEX products_by_category ON products (category, created_at DESC, id DESC);
-- The search index's catch-up query.
CREATE INDEX products_by_updated ON products (updated_at);
