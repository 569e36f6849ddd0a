//! Schema migrations, embedded in the binary: one set per backend.

use diesel::migration::{Migration, MigrationSource};
use diesel::mysql::Mysql;
use diesel::sqlite::Sqlite;
use diesel_async::AsyncMigrationHarness;
use diesel_async::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::{Backend, Database, DbConnection, DbError};

const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");
const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// A failed migration command.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("no migration is applied, so there is nothing to revert")]
    NothingToRevert,
    #[error("the runtime failed while migrating: {0}")]
    Runtime(String),
}

/// One migration and whether the database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    /// Folder name without the timestamp, e.g. `create_users`.
    pub name: String,
    /// The timestamp prefix diesel records, e.g. `20261204000001`.
    pub version: String,
    pub applied: bool,
}

/// The schema's state compared with the migrations this binary carries.
#[derive(Clone, Debug)]
pub struct SchemaStatus {
    pub migrations: Vec<MigrationState>,
    /// Versions applied to the database that this binary does not know, which means the
    /// database was migrated by a newer release.
    pub unknown: Vec<String>,
}

impl std::fmt::Display for MigrationState {
    /// Writes the migration's folder name, e.g. `20261204000001_create_tenants`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.version, self.name)
    }
}

impl SchemaStatus {
    pub fn pending(&self) -> impl Iterator<Item = &MigrationState> {
        self.migrations.iter().filter(|m| !m.applied)
    }

    pub fn is_current(&self) -> bool {
        self.pending().next().is_none()
    }
}

fn known(backend: Backend) -> Vec<(String, String)> {
    fn names<DB: diesel::backend::Backend>(source: &EmbeddedMigrations) -> Vec<(String, String)>
    where
        EmbeddedMigrations: MigrationSource<DB>,
    {
        let migrations: Vec<Box<dyn Migration<DB>>> =
            MigrationSource::<DB>::migrations(source).unwrap_or_default();
        migrations
            .iter()
            .map(|m| {
                let full = m.name().to_string();
                let version = m.name().version().to_string();
                let name = full
                    .split_once('_')
                    .map_or(full.clone(), |(_, rest)| rest.to_string());
                (version, name)
            })
            .collect()
    }
    match backend {
        Backend::Mysql => names::<Mysql>(&MYSQL),
        Backend::Sqlite => names::<Sqlite>(&SQLITE),
    }
}

#[derive(diesel::QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

/// Compares the applied versions with the embedded migrations. Reads only; cheap enough for a
/// periodic health check.
pub async fn status(conn: &mut DbConnection) -> Result<SchemaStatus, diesel::result::Error> {
    let backend = conn.backend();
    let exists_sql = match backend {
        Backend::Mysql => {
            "SELECT COUNT(*) AS count FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '__diesel_schema_migrations'"
        }
        Backend::Sqlite => {
            "SELECT COUNT(*) AS count FROM sqlite_master \
             WHERE type = 'table' AND name = '__diesel_schema_migrations'"
        }
    };
    let exists = diesel::sql_query(exists_sql)
        .get_result::<Count>(conn)
        .await?
        .count
        > 0;
    let applied: Vec<String> = if exists {
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load::<AppliedVersion>(conn)
            .await?
            .into_iter()
            .map(|row| row.version)
            .collect()
    } else {
        Vec::new()
    };

    let known = known(backend);
    let unknown = applied
        .iter()
        .filter(|version| !known.iter().any(|(known, _)| known == *version))
        .cloned()
        .collect();
    let migrations = known
        .into_iter()
        .map(|(version, name)| MigrationState {
            applied: applied.contains(&version),
            name,
            version,
        })
        .collect();
    Ok(SchemaStatus {
        migrations,
        unknown,
    })
}

/// A migration command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Apply every pending migration.
    Run,
    /// Revert the most recent migration.
    Revert,
    /// Revert every applied migration.
    RevertAll,
    /// Revert the most recent migration and apply it again.
    Redo,
}

/// Runs `command` on a dedicated connection and returns the versions of the migrations it ran
/// or reverted, in order. Needs a multi-threaded runtime: diesel's harness blocks in place.
pub async fn execute(database: &Database, command: Command) -> Result<Vec<String>, MigrationError> {
    let conn = database
        .connector()
        .connect()
        .await
        .map_err(DbError::from)?;
    match conn {
        DbConnection::Mysql(conn) => run_on::<_, Mysql>(conn, || MYSQL, command),
        DbConnection::Sqlite(conn) => run_on::<_, Sqlite>(conn, || SQLITE, command),
    }
}

fn run_on<C, DB>(
    conn: C,
    source: impl Fn() -> EmbeddedMigrations,
    command: Command,
) -> Result<Vec<String>, MigrationError>
where
    C: diesel_async::AsyncConnection<Backend = DB> + 'static,
    DB: diesel::backend::Backend,
    AsyncMigrationHarness<C>: MigrationHarness<DB>,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let mut harness = AsyncMigrationHarness::new(conn);
    let failed = |error: Box<dyn std::error::Error + Send + Sync>| {
        MigrationError::Migration(error.to_string())
    };
    match command {
        Command::Run => Ok(to_strings(
            harness.run_pending_migrations(source()).map_err(failed)?,
        )),
        Command::RevertAll => Ok(to_strings(
            harness.revert_all_migrations(source()).map_err(failed)?,
        )),
        Command::Revert | Command::Redo => {
            if harness.applied_migrations().map_err(failed)?.is_empty() {
                return Err(MigrationError::NothingToRevert);
            }
            let reverted = harness.revert_last_migration(source()).map_err(failed)?;
            if command == Command::Redo {
                let migrations: Vec<Box<dyn Migration<DB>>> =
                    MigrationSource::<DB>::migrations(&source()).map_err(failed)?;
                let migration = migrations
                    .iter()
                    .find(|m| m.name().version() == reverted)
                    .ok_or_else(|| {
                        MigrationError::Migration(format!("migration {reverted} is not embedded"))
                    })?;
                harness.run_migration(migration.as_ref()).map_err(failed)?;
            }
            Ok(vec![reverted.to_string()])
        }
    }
}

fn to_strings(versions: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    versions.into_iter().map(|v| v.to_string()).collect()
}
