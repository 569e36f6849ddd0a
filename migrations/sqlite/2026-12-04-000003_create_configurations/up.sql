-- Configurations: versioned JSON documents per tenant and namespace
-- (config_type). Each version is its own row. No index limits a namespace
-- to one active row, so the service enforces that.
CREATE TABLE configurations (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    config_type TEXT NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    is_active BOOLEAN NOT NULL,
    description TEXT,
    -- Id of the user or API key that wrote this version. It has no foreign
    -- key, so the history survives when that user or key is deleted.
    created_by TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    deleted_at TIMESTAMP,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_configurations_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_configurations_value CHECK (json_valid(value)),
    CONSTRAINT ck_configurations_version CHECK (version >= 0)
);

CREATE UNIQUE INDEX uq_configurations_tenant_id_config_type_version
    ON configurations (tenant_id, config_type, version);
CREATE INDEX ix_configurations_tenant_id_config_type_is_active
    ON configurations (tenant_id, config_type, is_active);
CREATE INDEX ix_configurations_tenant_id_created_at ON configurations (tenant_id, created_at);

-- Sets updated_at when an UPDATE left it unchanged, like MySQL's ON UPDATE
-- CURRENT_TIMESTAMP. trg_tenants_updated_at explains the two conditions.
CREATE TRIGGER trg_configurations_updated_at
AFTER UPDATE ON configurations
FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
    AND NEW.updated_at <> strftime('%Y-%m-%d %H:%M:%f', 'now')
BEGIN
    UPDATE configurations
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE tenant_id = NEW.tenant_id AND id = NEW.id;
END;
