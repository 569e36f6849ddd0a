DROP TRIGGER trg_users_updated_at;
DROP TABLE users;
