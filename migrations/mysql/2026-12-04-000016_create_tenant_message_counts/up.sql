-- Messages created per tenant and calendar month (UTC), the figure that a plan's monthly
-- message quota limits. AddMessage adds to the row in its own transaction with an UPDATE that
-- checks the limit, so concurrent adds queue on the row and cannot pass the limit together.
-- Deleting messages does not lower the count.
CREATE TABLE tenant_message_counts (
    tenant_id CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- The month as 'YYYY-MM'.
    usage_month CHAR(7) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    messages BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, usage_month),
    CONSTRAINT fk_tenant_message_counts_tenant_id FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE,
    CONSTRAINT ck_tenant_message_counts_messages CHECK (messages >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO tenant_message_counts (tenant_id, usage_month, messages)
SELECT tenant_id, DATE_FORMAT(created_at, '%Y-%m'), COUNT(*)
FROM messages
GROUP BY tenant_id, DATE_FORMAT(created_at, '%Y-%m');
