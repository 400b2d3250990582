-- Accounts. The email is stored normalised (trimmed, lower case), so the
-- unique index is what makes one account per address.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    -- argon2id, PHC string format (algorithm, parameters, salt, hash).
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at BIGINT NOT NULL
);

-- Refresh sessions. Only a SHA-256 of the token is kept: a copy of this
-- table does not let anyone sign in. A used token is revoked and points at
-- the session that replaced it, so presenting it again is recognised as a
-- stolen token and ends every session of that user.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    replaced_by TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Saved cards: the provider's token and what a shopper needs to recognise
-- the card. Never a card number or CVC.
CREATE TABLE payment_methods (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    provider TEXT NOT NULL,
    provider_token TEXT NOT NULL,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL,
    exp_month BIGINT NOT NULL,
    exp_year BIGINT NOT NULL,
    is_default BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX payment_methods_by_user ON payment_methods (user_id);
