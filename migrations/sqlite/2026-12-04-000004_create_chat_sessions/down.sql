DROP TRIGGER trg_chat_sessions_updated_at;
DROP TABLE chat_sessions;
