DROP TRIGGER trg_api_keys_updated_at;
DROP TABLE api_keys;
