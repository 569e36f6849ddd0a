-- Emails are stored lowercased and compared byte for byte. utf8mb4_unicode_ci
-- treated 'josé@x.com' and 'jose@x.com' (and 'ß' and 'ss') as equal, so two
-- different addresses collided in the unique key and in logins.
ALTER TABLE users
    MODIFY email VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE email_verifications
    MODIFY email VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
