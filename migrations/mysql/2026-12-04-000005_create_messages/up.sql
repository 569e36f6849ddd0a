-- Messages: the turns of a chat session, optionally arranged in threads or
-- branches through parent_id.
CREATE TABLE messages (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    session_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- Author. It has no foreign key, so a message outlives its author.
    user_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    -- Parent message in the same session. It has no foreign key because a
    -- self-referencing ON DELETE CASCADE breaks on long reply chains. InnoDB
    -- allows at most 15 nested cascades, so on MariaDB 10.11 deleting a
    -- tenant failed once a chain reached 15 messages. SQLite fails past its
    -- trigger depth limit (1000 by default). The service checks that the
    -- parent is in the same session and deletes replies itself.
    parent_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NULL,
    role VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    content MEDIUMTEXT NOT NULL,
    -- Rendering hint such as 'text', 'code' or 'tether_quote'.
    content_type VARCHAR(64) NOT NULL DEFAULT 'text',
    model VARCHAR(255) NULL,
    prompt_tokens INT NULL,
    completion_tokens INT NULL,
    latency_ms INT NULL,
    finish_reason VARCHAR(64) NULL,
    metadata JSON NOT NULL,
    -- Client-supplied idempotency key. A retried add with the same key in the
    -- same session hits uq_messages_tenant_id_session_id_request_id.
    request_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    -- Content version. The service increments it on each edit.
    version INT NOT NULL DEFAULT 1,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    deleted_at DATETIME(6) NULL,
    PRIMARY KEY (tenant_id, id),
    -- Keyset paging through a session in time order.
    KEY ix_messages_tenant_id_session_id_created_at_id (tenant_id, session_id, created_at, id),
    KEY ix_messages_tenant_id_session_id_parent_id (tenant_id, session_id, parent_id),
    KEY ix_messages_tenant_id_user_id (tenant_id, user_id),
    UNIQUE KEY uq_messages_tenant_id_session_id_request_id (tenant_id, session_id, request_id),
    KEY ix_messages_tenant_id_created_at (tenant_id, created_at),
    KEY ix_messages_tenant_id_role (tenant_id, role),
    CONSTRAINT fk_messages_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_messages_tenant_id_session_id FOREIGN KEY (tenant_id, session_id)
        REFERENCES chat_sessions (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT ck_messages_role CHECK (role IN ('user', 'assistant', 'system', 'tool')),
    CONSTRAINT ck_messages_parent_id CHECK (parent_id IS NULL OR parent_id <> id),
    CONSTRAINT ck_messages_prompt_tokens CHECK (prompt_tokens IS NULL OR prompt_tokens >= 0),
    CONSTRAINT ck_messages_completion_tokens CHECK (completion_tokens IS NULL OR completion_tokens >= 0),
    CONSTRAINT ck_messages_latency_ms CHECK (latency_ms IS NULL OR latency_ms >= 0),
    CONSTRAINT ck_messages_version CHECK (version >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
