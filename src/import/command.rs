//! `ally import conversations FILE --tenant T --user U`: the import of
//! `ChatService.ImportConversations`, run directly against the database.

use std::io::Read;
use std::path::PathBuf;

use clap::Subcommand;

use super::Format;
use crate::auth::RequestContext;
use crate::config::Settings;
use crate::grpc::{ApiError, validate};
use crate::repo;

#[derive(Clone, Debug, Subcommand)]
pub enum ImportAction {
    /// Import a ChatGPT, Open WebUI or LibreChat export file as chat sessions of one user.
    Conversations {
        /// The export file, such as ChatGPT's conversations.json.
        file: PathBuf,
        /// Id of the tenant.
        #[arg(long)]
        tenant: String,
        /// Id of the user who will own the sessions.
        #[arg(long)]
        user: String,
        /// Format of the file: chatgpt, openwebui or librechat. Detected from the JSON shape
        /// when not given.
        #[arg(long, value_parser = parse_format)]
        format: Option<Format>,
    },
}

fn parse_format(value: &str) -> Result<Format, String> {
    Format::parse(value).ok_or_else(|| {
        format!("{value:?} is not a format; expected chatgpt, openwebui or librechat")
    })
}

/// Runs `ally import`.
pub async fn run(settings: Settings, action: ImportAction) -> anyhow::Result<()> {
    let ImportAction::Conversations {
        file,
        tenant,
        user,
        format,
    } = action;
    let tenant_id = validate::id("--tenant", &tenant).map_err(message)?;
    let user_id = validate::id("--user", &user).map_err(message)?;
    let data = read_limited(&file, settings.chat.import_max_bytes)?;

    let database = crate::legacy::directory::open_for_tenant(&settings, &tenant_id).await?;
    {
        let mut conn = database.read().await?;
        match repo::users::find(&mut conn, &tenant_id, &user_id).await? {
            None => anyhow::bail!("user {user_id} not found in tenant {tenant_id}"),
            Some(user) if !user.is_active => {
                anyhow::bail!("user {user_id} is deactivated; activate the user first")
            }
            Some(_) => {}
        }
    }

    let export = super::parse_on_own_thread(data, format, crate::models::now())
        .await?
        .map_err(|error| anyhow::anyhow!("{} is not a valid export: {error}", file.display()))?;
    let mut context = RequestContext::system("conversation import");
    context.tenant_id = Some(tenant_id.clone());
    let summary = super::store::store(&database, &context, &tenant_id, &user_id, &export)
        .await
        .map_err(message)?;

    for outcome in &summary.conversations {
        let state = if outcome.created {
            "created"
        } else {
            "present"
        };
        println!(
            "{state:<8} {} {:?}: {} messages imported, {} already present, {} not added",
            outcome.session_id,
            outcome.title,
            outcome.messages_imported,
            outcome.messages_present,
            outcome.messages_not_added
        );
    }
    println!("format:                 {}", export.format.as_str());
    println!("conversations imported: {}", summary.conversations_imported);
    println!("conversations present:  {}", summary.conversations_present);
    println!("messages imported:      {}", summary.messages_imported);
    println!("messages present:       {}", summary.messages_present);
    println!("skipped nodes:          {}", summary.skipped_nodes);
    println!("reattached messages:    {}", summary.reattached_messages);
    Ok(())
}

/// Reads a file of at most `max_bytes`.
fn read_limited(path: &std::path::Path, max_bytes: usize) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|error| anyhow::anyhow!("opening {} failed: {error}", path.display()))?;
    let mut data = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|error| anyhow::anyhow!("reading {} failed: {error}", path.display()))?;
    if data.len() > max_bytes {
        anyhow::bail!(
            "{} is larger than chat.import_max_bytes ({max_bytes} bytes); raise the setting \
             or split the export",
            path.display()
        );
    }
    Ok(data)
}

/// Turns a handler error into the CLI's message, with the field names of invalid input.
fn message(error: ApiError) -> anyhow::Error {
    match error {
        ApiError::InvalidArgument(violations) => anyhow::anyhow!(
            "{}",
            violations
                .iter()
                .map(|violation| format!("{}: {}", violation.field, violation.description))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => anyhow::anyhow!("{other}"),
    }
}
