DROP TABLE request_ids;
DROP TABLE email_verifications;
DROP TABLE refresh_tokens;
