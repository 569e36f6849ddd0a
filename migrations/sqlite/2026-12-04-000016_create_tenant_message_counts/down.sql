DROP TABLE tenant_message_counts;
