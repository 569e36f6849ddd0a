-- Messages created per tenant and calendar month (UTC), the figure that a plan's monthly
-- message quota limits. AddMessage adds to the row in its own transaction with an UPDATE that
-- checks the limit, so concurrent adds cannot pass the limit together. Deleting messages does
-- not lower the count.
CREATE TABLE tenant_message_counts (
    tenant_id TEXT NOT NULL,
    -- The month as 'YYYY-MM'.
    usage_month TEXT NOT NULL,
    messages BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, usage_month),
    CONSTRAINT fk_tenant_message_counts_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_tenant_message_counts_messages CHECK (messages >= 0)
);

INSERT INTO tenant_message_counts (tenant_id, usage_month, messages)
SELECT tenant_id, strftime('%Y-%m', created_at), COUNT(*)
FROM messages
GROUP BY tenant_id, strftime('%Y-%m', created_at);
