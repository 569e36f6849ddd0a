-- Tenants: one row per customer organisation. Every other table hangs off
-- tenants.id and is deleted with it (ON DELETE CASCADE, which SQLite applies
-- only on connections that ran PRAGMA foreign_keys = ON).
--
-- Timestamps are UTC text. Diesel writes 'YYYY-MM-DD HH:MM:SS' followed by a
-- fraction of 3, 6 or 9 digits unless it is zero, and the column defaults
-- write 'YYYY-MM-DD HH:MM:SS.SSS'. Both keep text order equal to time order.
CREATE TABLE tenants (
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- NOCASE matches the case-insensitive MySQL collation (ASCII letters only).
    domain TEXT COLLATE NOCASE,
    subdomain TEXT COLLATE NOCASE,
    plan TEXT NOT NULL DEFAULT 'free',
    status TEXT NOT NULL DEFAULT 'active',
    suspended_reason TEXT,
    settings TEXT NOT NULL,
    -- Optimistic-concurrency counter, exposed as the etag.
    version BIGINT NOT NULL DEFAULT 1,
    subscription_expires_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    deleted_at TIMESTAMP,
    PRIMARY KEY (id),
    CONSTRAINT ck_tenants_plan CHECK (plan IN ('free', 'starter', 'professional', 'enterprise')),
    CONSTRAINT ck_tenants_status CHECK (status IN ('active', 'suspended')),
    CONSTRAINT ck_tenants_settings CHECK (json_valid(settings)),
    CONSTRAINT ck_tenants_version CHECK (version >= 0)
);

CREATE UNIQUE INDEX uq_tenants_domain ON tenants (domain);
CREATE UNIQUE INDEX uq_tenants_subdomain ON tenants (subdomain);
CREATE INDEX ix_tenants_status ON tenants (status);
CREATE INDEX ix_tenants_deleted_at ON tenants (deleted_at);

-- Sets updated_at when an UPDATE left it unchanged, like MySQL's ON UPDATE
-- CURRENT_TIMESTAMP. The first condition skips UPDATEs that changed
-- updated_at, including the trigger's own UPDATE. The second skips rows that
-- already contain the current time. Without it, two UPDATEs within one
-- millisecond re-fire the trigger until SQLite's depth limit when PRAGMA
-- recursive_triggers = ON. SQLite keeps 'now' fixed for the whole statement.
CREATE TRIGGER trg_tenants_updated_at
AFTER UPDATE ON tenants
FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
    AND NEW.updated_at <> strftime('%Y-%m-%d %H:%M:%f', 'now')
BEGIN
    UPDATE tenants
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE id = NEW.id;
END;
