-- How the order is paid: a saved card charged by Kart, or the provider's
-- hosted checkout, where the shopper enters the card.
ALTER TABLE orders ADD COLUMN payment_kind TEXT NOT NULL DEFAULT 'saved_method';
