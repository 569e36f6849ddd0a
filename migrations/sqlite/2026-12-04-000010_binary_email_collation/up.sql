-- MySQL's email columns move to a binary collation in this migration. SQLite's
-- NOCASE collation folds ASCII letters only and emails are stored lowercased,
-- so SQLite already compares them byte for byte and needs no change.
SELECT 1;
