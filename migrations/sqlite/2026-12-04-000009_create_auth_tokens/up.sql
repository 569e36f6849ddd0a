-- Refresh tokens: one row per issued token, stored as a hash. Tokens rotated
-- from one login share a family_id, so reuse of a rotated token can revoke the
-- whole family.
CREATE TABLE refresh_tokens (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    -- Set when the token was exchanged for a new one.
    used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_refresh_tokens_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_refresh_tokens_tenant_id_user_id FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX uq_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX ix_refresh_tokens_tenant_id_family_id ON refresh_tokens (tenant_id, family_id);
CREATE INDEX ix_refresh_tokens_tenant_id_user_id ON refresh_tokens (tenant_id, user_id);

-- Email verification tokens: single use, stored as a hash, bound to the
-- address they were sent for.
CREATE TABLE email_verifications (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL COLLATE NOCASE,
    token_hash TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT fk_email_verifications_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT fk_email_verifications_tenant_id_user_id FOREIGN KEY (tenant_id, user_id)
        REFERENCES users (tenant_id, id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX uq_email_verifications_token_hash ON email_verifications (token_hash);
CREATE INDEX ix_email_verifications_tenant_id_user_id ON email_verifications (tenant_id, user_id);

-- Idempotency keys of create calls: a retried create with the same request_id
-- returns the resource the first call made. `scope` is the tenant id, or
-- 'platform' for operator calls.
CREATE TABLE request_ids (
    scope TEXT NOT NULL,
    method TEXT NOT NULL,
    request_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (scope, method, request_id)
);

CREATE INDEX ix_request_ids_created_at ON request_ids (created_at);
