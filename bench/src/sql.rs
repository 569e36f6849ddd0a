//! The SQL that Ally sends for each scenario, as the query log showed it, with the pool's
//! `SELECT 1` checks left out. `ally-bench capture-sql` prints what the server sends today, and
//! `--capture-sql` checks these statements against it.
//!
//! The statements are the same on both backends except the `_MYSQL` and `_SQLITE` pairs: diesel
//! writes `DEFAULT` for unset columns on MySQL and leaves them out on SQLite, and the tenant row
//! lock exists only on MySQL.

pub const TENANT_BY_ID: &str = "SELECT `tenants`.`id`, `tenants`.`name`, `tenants`.`domain`, `tenants`.`subdomain`, `tenants`.`plan`, `tenants`.`status`, `tenants`.`suspended_reason`, `tenants`.`settings`, `tenants`.`version`, `tenants`.`subscription_expires_at`, `tenants`.`created_at`, `tenants`.`updated_at`, `tenants`.`deleted_at` FROM `tenants` WHERE (`tenants`.`id` = ?)";

pub const SESSION_BY_ID: &str = "SELECT `chat_sessions`.`tenant_id`, `chat_sessions`.`id`, `chat_sessions`.`user_id`, `chat_sessions`.`title`, `chat_sessions`.`status`, `chat_sessions`.`is_shared`, `chat_sessions`.`share_token`, `chat_sessions`.`share_expires_at`, `chat_sessions`.`message_count`, `chat_sessions`.`last_message_at`, `chat_sessions`.`metadata`, `chat_sessions`.`created_at`, `chat_sessions`.`updated_at`, `chat_sessions`.`deleted_at` FROM `chat_sessions` WHERE ((`chat_sessions`.`tenant_id` = ?) AND (`chat_sessions`.`id` = ?))";

pub const SESSION_COUNT_MESSAGE: &str = "UPDATE `chat_sessions` SET `message_count` = (`chat_sessions`.`message_count` + ?) WHERE (((((`chat_sessions`.`tenant_id` = ?) AND (`chat_sessions`.`id` = ?)) AND (`chat_sessions`.`user_id` = ?)) AND (`chat_sessions`.`status` = ?)) AND (`chat_sessions`.`deleted_at` IS NULL))";

/// MySQL form.
pub const INSERT_MESSAGE_MYSQL: &str = "INSERT INTO `messages` (`tenant_id`, `id`, `session_id`, `user_id`, `parent_id`, `role`, `content`, `content_type`, `model`, `prompt_tokens`, `completion_tokens`, `latency_ms`, `finish_reason`, `metadata`, `request_id`, `version`, `created_at`, `updated_at`, `deleted_at`) VALUES (?, ?, ?, ?, DEFAULT, ?, ?, ?, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, ?, DEFAULT, ?, ?, ?, DEFAULT)";

/// SQLite form.
pub const INSERT_MESSAGE_SQLITE: &str = "INSERT INTO `messages` (`tenant_id`, `id`, `session_id`, `user_id`, `role`, `content`, `content_type`, `metadata`, `version`, `created_at`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const SESSION_LAST_MESSAGE: &str = "UPDATE `chat_sessions` SET `last_message_at` = ?, `updated_at` = ? WHERE ((`chat_sessions`.`tenant_id` = ?) AND (`chat_sessions`.`id` = ?))";

pub const INSERT_AUDIT: &str = "INSERT INTO `audit_logs` (`tenant_id`, `id`, `actor_type`, `actor_id`, `event_type`, `resource_type`, `resource_id`, `severity`, `request_id`, `ip_address`, `metadata`, `created_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const COUNT_TENANT_MESSAGES: &str = "UPDATE `tenant_message_counts` SET `messages` = (`tenant_message_counts`.`messages` + ?) WHERE ((`tenant_message_counts`.`tenant_id` = ?) AND (`tenant_message_counts`.`usage_month` = ?))";

pub const LIST_MESSAGES: &str = "SELECT `messages`.`tenant_id`, `messages`.`id`, `messages`.`session_id`, `messages`.`user_id`, `messages`.`parent_id`, `messages`.`role`, `messages`.`content`, `messages`.`content_type`, `messages`.`model`, `messages`.`prompt_tokens`, `messages`.`completion_tokens`, `messages`.`latency_ms`, `messages`.`finish_reason`, `messages`.`metadata`, `messages`.`request_id`, `messages`.`version`, `messages`.`created_at`, `messages`.`updated_at`, `messages`.`deleted_at` FROM `messages` WHERE (((`messages`.`tenant_id` = ?) AND (`messages`.`session_id` = ?)) AND (`messages`.`deleted_at` IS NULL)) ORDER BY `messages`.`created_at` ASC, `messages`.`id` ASC LIMIT ?";

pub const USER_BY_EMAIL: &str = "SELECT `users`.`tenant_id`, `users`.`id`, `users`.`email`, `users`.`display_name`, `users`.`password_hash`, `users`.`role`, `users`.`is_active`, `users`.`email_verified_at`, `users`.`failed_login_count`, `users`.`locked_until`, `users`.`last_login_at`, `users`.`created_at`, `users`.`updated_at` FROM `users` WHERE ((`users`.`tenant_id` = ?) AND (`users`.`email` = ?))";

/// MySQL form.
pub const RECORD_LOGIN_MYSQL: &str = "UPDATE `users` SET `failed_login_count` = ?, `locked_until` = NULL, `last_login_at` = ? WHERE ((`users`.`tenant_id` = ?) AND (`users`.`id` = ?))";

/// SQLite form.
pub const RECORD_LOGIN_SQLITE: &str = "UPDATE `users` SET `failed_login_count` = ?, `locked_until` = ?, `last_login_at` = ? WHERE ((`users`.`tenant_id` = ?) AND (`users`.`id` = ?))";

/// MySQL form.
pub const INSERT_REFRESH_TOKEN_MYSQL: &str = "INSERT INTO `refresh_tokens` (`tenant_id`, `id`, `user_id`, `family_id`, `token_hash`, `expires_at`, `used_at`, `revoked_at`, `created_at`) VALUES (?, ?, ?, ?, ?, ?, DEFAULT, DEFAULT, ?)";

/// SQLite form.
pub const INSERT_REFRESH_TOKEN_SQLITE: &str = "INSERT INTO `refresh_tokens` (`tenant_id`, `id`, `user_id`, `family_id`, `token_hash`, `expires_at`, `created_at`) VALUES (?, ?, ?, ?, ?, ?, ?)";

/// MySQL form.
pub const LOCK_TENANT_MYSQL: &str =
    "SELECT `tenants`.`id` FROM `tenants` WHERE (`tenants`.`id` = ?) FOR UPDATE";

/// MySQL form.
pub const INSERT_USER_MYSQL: &str = "INSERT INTO `users` (`tenant_id`, `id`, `email`, `display_name`, `password_hash`, `role`, `is_active`, `email_verified_at`, `failed_login_count`, `locked_until`, `last_login_at`, `created_at`, `updated_at`) VALUES (?, ?, ?, ?, DEFAULT, ?, ?, DEFAULT, ?, DEFAULT, DEFAULT, ?, ?)";

/// SQLite form.
pub const INSERT_USER_SQLITE: &str = "INSERT INTO `users` (`tenant_id`, `id`, `email`, `display_name`, `role`, `is_active`, `failed_login_count`, `created_at`, `updated_at`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// A page of messages after the cursor `(created_at, id)`.
pub const LIST_MESSAGES_AFTER: &str = "SELECT `messages`.`tenant_id`, `messages`.`id`, `messages`.`session_id`, `messages`.`user_id`, `messages`.`parent_id`, `messages`.`role`, `messages`.`content`, `messages`.`content_type`, `messages`.`model`, `messages`.`prompt_tokens`, `messages`.`completion_tokens`, `messages`.`latency_ms`, `messages`.`finish_reason`, `messages`.`metadata`, `messages`.`request_id`, `messages`.`version`, `messages`.`created_at`, `messages`.`updated_at`, `messages`.`deleted_at` FROM `messages` WHERE (((((`messages`.`tenant_id` = ?) AND (`messages`.`session_id` = ?)) AND (`messages`.`deleted_at` IS NULL)) AND (`messages`.`created_at` >= ?)) AND ((`messages`.`created_at` > ?) OR ((`messages`.`created_at` = ?) AND (`messages`.`id` > ?)))) ORDER BY `messages`.`created_at` ASC, `messages`.`id` ASC LIMIT ?";

/// The newest audit entries of a tenant.
pub const LIST_AUDIT: &str = "SELECT `audit_logs`.`tenant_id`, `audit_logs`.`id`, `audit_logs`.`actor_type`, `audit_logs`.`actor_id`, `audit_logs`.`event_type`, `audit_logs`.`resource_type`, `audit_logs`.`resource_id`, `audit_logs`.`severity`, `audit_logs`.`request_id`, `audit_logs`.`ip_address`, `audit_logs`.`metadata`, `audit_logs`.`created_at` FROM `audit_logs` WHERE (`audit_logs`.`tenant_id` = ?) ORDER BY `audit_logs`.`created_at` DESC, `audit_logs`.`id` DESC LIMIT ?";

/// The newest audit entries of a tenant of one event type.
pub const LIST_AUDIT_BY_EVENT: &str = "SELECT `audit_logs`.`tenant_id`, `audit_logs`.`id`, `audit_logs`.`actor_type`, `audit_logs`.`actor_id`, `audit_logs`.`event_type`, `audit_logs`.`resource_type`, `audit_logs`.`resource_id`, `audit_logs`.`severity`, `audit_logs`.`request_id`, `audit_logs`.`ip_address`, `audit_logs`.`metadata`, `audit_logs`.`created_at` FROM `audit_logs` WHERE ((`audit_logs`.`tenant_id` = ?) AND (`audit_logs`.`event_type` = ?)) ORDER BY `audit_logs`.`created_at` DESC, `audit_logs`.`id` DESC LIMIT ?";
