-- Earlier contents of edited messages. EditMessage stores the content a
-- message had before the edit, with the version it had, and then increments
-- messages.version. Deleting a message or its session deletes its revisions.
CREATE TABLE message_revisions (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    content TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_message_revisions_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_message_revisions_tenant_id_message_id FOREIGN KEY (tenant_id, message_id)
        REFERENCES messages (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_message_revisions_version CHECK (version >= 0)
);

-- One row per replaced version; also the keyset paging order.
CREATE UNIQUE INDEX uq_message_revisions_tenant_id_message_id_version
    ON message_revisions (tenant_id, message_id, version);
