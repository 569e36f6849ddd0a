DROP TRIGGER trg_messages_updated_at;
DROP TABLE messages;
