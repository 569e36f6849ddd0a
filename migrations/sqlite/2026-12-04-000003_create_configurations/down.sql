DROP TRIGGER trg_configurations_updated_at;
DROP TABLE configurations;
