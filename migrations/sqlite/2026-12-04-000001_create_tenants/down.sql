DROP TRIGGER trg_tenants_updated_at;
DROP TABLE tenants;
