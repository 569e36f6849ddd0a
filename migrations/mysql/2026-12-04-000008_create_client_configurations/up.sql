-- Client configurations: legacy client config files imported as text and
-- converted into configurations rows. migration_status tracks the conversion.
CREATE TABLE client_configurations (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    client_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    legacy_version VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    source_format VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- The imported file exactly as received.
    original_text MEDIUMTEXT NOT NULL,
    migration_status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'pending',
    migration_error VARCHAR(2000) NULL,
    migrated_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY uq_client_configurations_tenant_id_client_id_legacy_version
        (tenant_id, client_id, legacy_version),
    KEY ix_client_configurations_tenant_id_migration_status (tenant_id, migration_status),
    CONSTRAINT fk_client_configurations_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_client_configurations_source_format CHECK (source_format IN ('json', 'ini', 'env')),
    CONSTRAINT ck_client_configurations_migration_status
        CHECK (migration_status IN ('pending', 'migrated', 'failed'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
