-- Chat sessions: one conversation owned by one user. Deleting the user or
-- the tenant deletes the session and its messages.
CREATE TABLE chat_sessions (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    is_shared BOOLEAN NOT NULL DEFAULT 0,
    -- Public share links look the session up by token before the tenant is
    -- known, so the token is unique across all tenants.
    share_token TEXT,
    share_expires_at TIMESTAMP,
    message_count BIGINT NOT NULL DEFAULT 0,
    last_message_at TIMESTAMP,
    metadata TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    deleted_at TIMESTAMP,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_chat_sessions_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_chat_sessions_tenant_id_user_id FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_chat_sessions_status CHECK (status IN ('active', 'archived')),
    CONSTRAINT ck_chat_sessions_message_count CHECK (message_count >= 0),
    CONSTRAINT ck_chat_sessions_metadata CHECK (json_valid(metadata))
);

CREATE UNIQUE INDEX uq_chat_sessions_share_token ON chat_sessions (share_token);
-- Lists a user's sessions by latest activity (keyset paging on
-- last_message_at, id). Sessions without messages have a NULL
-- last_message_at, which sorts first ascending and last descending.
CREATE INDEX ix_chat_sessions_tenant_id_user_id_last_message_at_id
    ON chat_sessions (tenant_id, user_id, last_message_at, id);
CREATE INDEX ix_chat_sessions_tenant_id_status ON chat_sessions (tenant_id, status);
CREATE INDEX ix_chat_sessions_tenant_id_is_shared ON chat_sessions (tenant_id, is_shared);
CREATE INDEX ix_chat_sessions_tenant_id_created_at ON chat_sessions (tenant_id, created_at);
CREATE INDEX ix_chat_sessions_tenant_id_deleted_at ON chat_sessions (tenant_id, deleted_at);

-- Sets updated_at when an UPDATE left it unchanged, like MySQL's ON UPDATE
-- CURRENT_TIMESTAMP. trg_tenants_updated_at explains the two conditions.
CREATE TRIGGER trg_chat_sessions_updated_at
AFTER UPDATE ON chat_sessions
FOR EACH ROW
WHEN NEW.updated_at = OLD.updated_at
    AND NEW.updated_at <> strftime('%Y-%m-%d %H:%M:%f', 'now')
BEGIN
    UPDATE chat_sessions
    SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE tenant_id = NEW.tenant_id AND id = NEW.id;
END;
