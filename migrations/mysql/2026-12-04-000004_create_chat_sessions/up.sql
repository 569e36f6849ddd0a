-- Chat sessions: one conversation owned by one user. Deleting the user or
-- the tenant deletes the session and its messages.
CREATE TABLE chat_sessions (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    title VARCHAR(500) NOT NULL,
    status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'active',
    is_shared BOOLEAN NOT NULL DEFAULT FALSE,
    -- Public share links look the session up by token before the tenant is
    -- known, so the token is unique across all tenants.
    share_token VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    share_expires_at DATETIME(6) NULL,
    message_count BIGINT NOT NULL DEFAULT 0,
    last_message_at DATETIME(6) NULL,
    metadata JSON NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    deleted_at DATETIME(6) NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE KEY uq_chat_sessions_share_token (share_token),
    -- Lists a user's sessions by latest activity (keyset paging on
    -- last_message_at, id). Sessions without messages have a NULL
    -- last_message_at, which sorts first ascending and last descending.
    KEY ix_chat_sessions_tenant_id_user_id_last_message_at_id (tenant_id, user_id, last_message_at, id),
    KEY ix_chat_sessions_tenant_id_status (tenant_id, status),
    KEY ix_chat_sessions_tenant_id_is_shared (tenant_id, is_shared),
    KEY ix_chat_sessions_tenant_id_created_at (tenant_id, created_at),
    KEY ix_chat_sessions_tenant_id_deleted_at (tenant_id, deleted_at),
    CONSTRAINT fk_chat_sessions_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_chat_sessions_tenant_id_user_id FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_chat_sessions_status CHECK (status IN ('active', 'archived')),
    CONSTRAINT ck_chat_sessions_message_count CHECK (message_count >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
