-- Users: accounts inside one tenant. The email is unique per tenant, so the
-- same person can hold separate accounts in several tenants.
CREATE TABLE users (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- Stored lowercased and trimmed by the service. 320 characters is the
    -- maximum length of an address (64 local part + @ + 255 domain).
    email VARCHAR(320) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    -- NULL for users who only sign in through SSO.
    password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    role VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'member',
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    email_verified_at DATETIME(6) NULL,
    failed_login_count INT NOT NULL DEFAULT 0,
    locked_until DATETIME(6) NULL,
    last_login_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY uq_users_tenant_id_email (tenant_id, email),
    KEY ix_users_tenant_id_role (tenant_id, role),
    KEY ix_users_tenant_id_is_active (tenant_id, is_active),
    KEY ix_users_tenant_id_created_at_id (tenant_id, created_at, id),
    CONSTRAINT fk_users_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_users_role CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    CONSTRAINT ck_users_failed_login_count CHECK (failed_login_count >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
