-- Configurations: versioned JSON documents per tenant and namespace
-- (config_type). Each version is its own row. No index limits a namespace
-- to one active row, so the service enforces that.
CREATE TABLE configurations (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    config_type VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    value JSON NOT NULL,
    version INT NOT NULL,
    is_active BOOLEAN NOT NULL,
    description VARCHAR(500) NULL,
    -- Id of the user or API key that wrote this version. It has no foreign
    -- key, so the history survives when that user or key is deleted.
    created_by CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    deleted_at DATETIME(6) NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY uq_configurations_tenant_id_config_type_version (tenant_id, config_type, version),
    KEY ix_configurations_tenant_id_config_type_is_active (tenant_id, config_type, is_active),
    KEY ix_configurations_tenant_id_created_at (tenant_id, created_at),
    CONSTRAINT fk_configurations_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_configurations_version CHECK (version >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
