-- Audit logs: append-only security and change events, so there is no
-- updated_at and no trigger. ix_audit_logs_created_at serves retention
-- pruning across all tenants.
CREATE TABLE audit_logs (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    actor_type TEXT NOT NULL,
    actor_id TEXT,
    event_type TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    severity TEXT NOT NULL,
    request_id TEXT,
    -- Textual IPv4 or IPv6 address.
    ip_address TEXT,
    metadata TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_audit_logs_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_audit_logs_actor_type
        CHECK (actor_type IN ('user', 'api_key', 'operator', 'system', 'anonymous')),
    CONSTRAINT ck_audit_logs_severity CHECK (severity IN ('info', 'warning', 'critical')),
    CONSTRAINT ck_audit_logs_metadata CHECK (json_valid(metadata))
);

CREATE INDEX ix_audit_logs_tenant_id_created_at_id ON audit_logs (tenant_id, created_at, id);
CREATE INDEX ix_audit_logs_tenant_id_event_type_created_at
    ON audit_logs (tenant_id, event_type, created_at);
CREATE INDEX ix_audit_logs_tenant_id_actor_id_created_at
    ON audit_logs (tenant_id, actor_id, created_at);
CREATE INDEX ix_audit_logs_tenant_id_resource_type_resource_id
    ON audit_logs (tenant_id, resource_type, resource_id);
CREATE INDEX ix_audit_logs_tenant_id_severity_created_at
    ON audit_logs (tenant_id, severity, created_at);
CREATE INDEX ix_audit_logs_created_at ON audit_logs (created_at);
