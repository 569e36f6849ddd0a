-- Messages: the turns of a chat session, optionally arranged in threads or
-- branches through parent_id.
CREATE TABLE messages (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    -- Author. It has no foreign key, so a message outlives its author.
    user_id TEXT,
    -- Parent message in the same session. It has no foreign key because a
    -- self-referencing ON DELETE CASCADE breaks on long reply chains. SQLite
    -- fails past its trigger depth limit (1000 by default), and InnoDB past 15
    -- nested cascades. The service checks that the parent is in the same
    -- session and deletes replies itself.
    parent_id TEXT,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    -- Rendering hint such as 'text', 'code' or 'tether_quote'.
    content_type TEXT NOT NULL DEFAULT 'text',
    model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms INTEGER,
    finish_reason TEXT,
    metadata TEXT NOT NULL,
    -- Client-supplied idempotency key. A retried add with the same key in the
    -- same session hits uq_messages_tenant_id_session_id_request_id.
    request_id TEXT,
    -- Content version. The service increments it on each edit.
    version INTEGER NOT NULL DEFAULT 1,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    deleted_at TIMESTAMP,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_messages_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_messages_tenant_id_session_id FOREIGN KEY (tenant_id, session_id)
        REFERENCES chat_sessions (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_messages_role CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    CONSTRAINT ck_messages_parent_id CHECK (parent_id IS NULL OR parent_id <> id),
    CONSTRAINT ck_messages_prompt_tokens CHECK (prompt_tokens IS NULL OR prompt_tokens >= 0),
    CONSTRAINT ck_messages_completion_tokens CHECK (completion_tokens IS NULL OR completion_tokens >= 0),
    CONSTRAINT ck_messages_latency_ms CHECK (latency_ms IS NULL OR latency_ms >= 0),
    CONSTRAINT ck_messages_metadata CHECK (json_valid(metadata)),
    CONSTRAINT ck_messages_version CHECK (version >= 0)
);

-- Keyset paging through a session in time order.
CREATE INDEX ix_messages_tenant_id_session_id_created_at_id
    ON messages (tenant_id, session_id, created_at, id);
CREATE INDEX ix_messages_tenant_id_session_id_parent_id
    ON messages (tenant_id, session_id, parent_id);
CREATE INDEX ix_messages_tenant_id_user_id ON messages (tenant_id, user_id);
CREATE UNIQUE INDEX uq_messages_tenant_id_session_id_request_id
    ON messages (tenant_id, session_id, request_id);
CREATE INDEX ix_messages_tenant_id_created_at ON messages (tenant_id, created_at);
CREATE INDEX ix_messages_tenant_id_role ON messages (tenant_id, role);

-- Sets updated_at when an UPDATE left it unchanged, like MySQL's ON UPDATE
-- CURRENT_TIMESTAMP. trg_tenants_updated_at explains the two conditions.
CREATE TRIGGER trg_messages_updated_at
AFTER UPDATE ON messages
FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
    AND NEW.updated_at <> strftime('%Y-%m-%d %H:%M:%f', 'now')
BEGIN
    UPDATE messages
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE tenant_id = NEW.tenant_id AND id = NEW.id;
END;
