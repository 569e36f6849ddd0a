-- Earlier contents of edited messages. EditMessage stores the content a
-- message had before the edit, with the version it had, and then increments
-- messages.version. Deleting a message or its session deletes its revisions.
CREATE TABLE message_revisions (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    message_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version INT NOT NULL,
    content MEDIUMTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (tenant_id, id),
    -- One row per replaced version; also the keyset paging order.
    UNIQUE KEY uq_message_revisions_tenant_id_message_id_version (tenant_id, message_id, version),
    CONSTRAINT fk_message_revisions_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_message_revisions_tenant_id_message_id FOREIGN KEY (tenant_id, message_id)
        REFERENCES messages (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_message_revisions_version CHECK (version >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
