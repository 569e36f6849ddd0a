-- Tenants: one row per customer organisation. Every other table hangs off
-- tenants.id and is deleted with it (ON DELETE CASCADE).
CREATE TABLE tenants (
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name VARCHAR(255) NOT NULL,
    -- Custom domain and subdomain resolve a request to its tenant before
    -- authentication. They compare case-insensitively (utf8mb4_unicode_ci).
    domain VARCHAR(255) NULL,
    subdomain VARCHAR(63) NULL,
    plan VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'free',
    status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'active',
    suspended_reason VARCHAR(500) NULL,
    settings JSON NOT NULL,
    -- Optimistic-concurrency counter, exposed as the etag.
    version BIGINT NOT NULL DEFAULT 1,
    subscription_expires_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    deleted_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_tenants_domain (domain),
    UNIQUE KEY uq_tenants_subdomain (subdomain),
    KEY ix_tenants_status (status),
    KEY ix_tenants_deleted_at (deleted_at),
    CONSTRAINT ck_tenants_plan CHECK (plan IN ('free', 'starter', 'professional', 'enterprise')),
    CONSTRAINT ck_tenants_status CHECK (status IN ('active', 'suspended')),
    CONSTRAINT ck_tenants_version CHECK (version >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
