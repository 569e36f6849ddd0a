-- Audit logs: append-only security and change events, so there is no
-- updated_at. ix_audit_logs_created_at serves retention pruning across all
-- tenants.
CREATE TABLE audit_logs (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    actor_type VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- Free-form identifiers compare byte for byte (utf8mb4_bin), as in SQLite.
    actor_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    event_type VARCHAR(100) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    resource_type VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    resource_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    severity VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    -- Textual IPv4 or IPv6 address. 45 characters fits an IPv4-mapped IPv6
    -- address.
    ip_address VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NULL,
    metadata JSON NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, id),
    KEY ix_audit_logs_tenant_id_created_at_id (tenant_id, created_at, id),
    KEY ix_audit_logs_tenant_id_event_type_created_at (tenant_id, event_type, created_at),
    KEY ix_audit_logs_tenant_id_actor_id_created_at (tenant_id, actor_id, created_at),
    KEY ix_audit_logs_tenant_id_resource_type_resource_id (tenant_id, resource_type, resource_id),
    KEY ix_audit_logs_tenant_id_severity_created_at (tenant_id, severity, created_at),
    KEY ix_audit_logs_created_at (created_at),
    CONSTRAINT fk_audit_logs_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_audit_logs_actor_type
        CHECK (actor_type IN ('user', 'api_key', 'operator', 'system', 'anonymous')),
    CONSTRAINT ck_audit_logs_severity CHECK (severity IN ('info', 'warning', 'critical'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
