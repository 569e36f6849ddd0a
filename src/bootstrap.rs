//! Creating the first tenant and its owner, from `ally bootstrap` or on the first start of a
//! development server with an empty database.

use std::io::Write;
use std::path::{Path, PathBuf};

use diesel::QueryDsl;
use diesel_async::RunQueryDsl;
use tracing::info;

use crate::auth::RequestContext;
use crate::db::Database;
use crate::grpc::ApiError;
use crate::grpc::tenants::{self, CreatedTenant};
use crate::proto::ally::v1 as pb;
use crate::schema;

/// File under the data folder that receives the owner key of an automatic bootstrap.
pub const KEY_FILE: &str = "bootstrap-owner-key.txt";

/// The tenant and owner to create.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    pub tenant_name: String,
    pub subdomain: String,
    pub owner_email: String,
    pub owner_name: String,
}

/// Creates the tenant, its owner and the owner's API key, validated like CreateTenant.
pub async fn create(database: &Database, bootstrap: &Bootstrap) -> Result<CreatedTenant, ApiError> {
    let request = pb::CreateTenantRequest {
        name: bootstrap.tenant_name.clone(),
        subdomain: bootstrap.subdomain.clone(),
        owner: Some(pb::InitialOwner {
            email: bootstrap.owner_email.clone(),
            display_name: bootstrap.owner_name.clone(),
            password: String::new(),
        }),
        ..Default::default()
    };
    let new = tenants::validate_create_request(request)?;
    tenants::insert_with_owner(database, &RequestContext::system("bootstrap"), new).await
}

/// On an empty database, creates a default tenant and writes the owner's key to a file that
/// only the server's user can read. Returns the file's path when it did.
pub async fn on_first_start(
    database: &Database,
    data_dir: &Path,
) -> Result<Option<PathBuf>, ApiError> {
    let existing: i64 = {
        let mut conn = database.read().await?;
        schema::tenants::table
            .count()
            .get_result(&mut *conn)
            .await?
    };
    if existing > 0 {
        return Ok(None);
    }
    let created = create(
        database,
        &Bootstrap {
            tenant_name: "Default".into(),
            subdomain: "default".into(),
            owner_email: "owner@ally.localhost".into(),
            owner_name: "Default owner".into(),
        },
    )
    .await?;
    let path = data_dir.join(KEY_FILE);
    write_private(&path, &created.owner_api_key).map_err(ApiError::internal)?;
    info!(
        tenant.id = %created.tenant.id,
        key_file = %path.display(),
        "created the default tenant; its owner's API key is in the key file"
    );
    Ok(Some(path))
}

/// Writes `secret` to a new file readable and writable by its owner only.
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")
}
