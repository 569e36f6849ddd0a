-- Client configurations: legacy client config files imported as text and
-- converted into configurations rows. migration_status tracks the conversion.
CREATE TABLE client_configurations (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    legacy_version TEXT NOT NULL,
    source_format TEXT NOT NULL,
    -- The imported file exactly as received.
    original_text TEXT NOT NULL,
    migration_status TEXT NOT NULL DEFAULT 'pending',
    migration_error TEXT,
    migrated_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_client_configurations_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_client_configurations_source_format CHECK (source_format IN ('json', 'ini', 'env')),
    CONSTRAINT ck_client_configurations_migration_status
        CHECK (migration_status IN ('pending', 'migrated', 'failed'))
);

CREATE UNIQUE INDEX uq_client_configurations_tenant_id_client_id_legacy_version
    ON client_configurations (tenant_id, client_id, legacy_version);
CREATE INDEX ix_client_configurations_tenant_id_migration_status
    ON client_configurations (tenant_id, migration_status);

-- Sets updated_at when an UPDATE left it unchanged, like MySQL's ON UPDATE
-- CURRENT_TIMESTAMP. trg_tenants_updated_at explains the two conditions.
CREATE TRIGGER trg_client_configurations_updated_at
AFTER UPDATE ON client_configurations
FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
    AND NEW.updated_at <> strftime('%Y-%m-%d %H:%M:%f', 'now')
BEGIN
    UPDATE client_configurations
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE tenant_id = NEW.tenant_id AND id = NEW.id;
END;
