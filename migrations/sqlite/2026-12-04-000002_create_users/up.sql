-- Users: accounts inside one tenant. The email is unique per tenant, so the
-- same person can hold separate accounts in several tenants.
CREATE TABLE users (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    -- Stored lowercased and trimmed by the service. NOCASE matches the
    -- case-insensitive MySQL collation (ASCII letters only).
    email TEXT NOT NULL COLLATE NOCASE,
    display_name TEXT NOT NULL,
    -- NULL for users who only sign in through SSO.
    password_hash TEXT,
    role TEXT NOT NULL DEFAULT 'member',
    is_active BOOLEAN NOT NULL DEFAULT 1,
    email_verified_at TIMESTAMP,
    failed_login_count INTEGER NOT NULL DEFAULT 0,
    locked_until TIMESTAMP,
    last_login_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_users_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_users_role CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    CONSTRAINT ck_users_failed_login_count CHECK (failed_login_count >= 0)
);

CREATE UNIQUE INDEX uq_users_tenant_id_email ON users (tenant_id, email);
CREATE INDEX ix_users_tenant_id_role ON users (tenant_id, role);
CREATE INDEX ix_users_tenant_id_is_active ON users (tenant_id, is_active);
CREATE INDEX ix_users_tenant_id_created_at_id ON users (tenant_id, created_at, id);

-- Sets updated_at when an UPDATE left it unchanged, like MySQL's ON UPDATE
-- CURRENT_TIMESTAMP. trg_tenants_updated_at explains the two conditions.
CREATE TRIGGER trg_users_updated_at
AFTER UPDATE ON users
FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
    AND NEW.updated_at <> strftime('%Y-%m-%d %H:%M:%f', 'now')
BEGIN
    UPDATE users
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE tenant_id = NEW.tenant_id AND id = NEW.id;
END;
