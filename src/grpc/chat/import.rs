//! ImportConversations: conversations exported from ChatGPT, Open WebUI or LibreChat, streamed
//! in chunks, stored as sessions of the caller.

use tonic::{Request, Status, Streaming};
use tracing::info;

use super::{Caller, ChatApi};
use crate::grpc::{ApiError, context};
use crate::import::store::{Outcome, Summary};
use crate::import::{self, Format};
use crate::models;
use crate::proto::ally::v1 as pb;

fn format_from_proto(value: i32) -> Result<Option<Format>, ApiError> {
    match pb::ImportFormat::try_from(value) {
        Ok(pb::ImportFormat::Unspecified) => Ok(None),
        Ok(pb::ImportFormat::Chatgpt) => Ok(Some(Format::ChatGpt)),
        Ok(pb::ImportFormat::OpenWebui) => Ok(Some(Format::OpenWebUi)),
        Ok(pb::ImportFormat::Librechat) => Ok(Some(Format::LibreChat)),
        Err(_) => Err(ApiError::invalid(
            "format",
            format!("{value} is not an import format"),
        )),
    }
}

fn format_to_proto(format: Format) -> pb::ImportFormat {
    match format {
        Format::ChatGpt => pb::ImportFormat::Chatgpt,
        Format::OpenWebUi => pb::ImportFormat::OpenWebui,
        Format::LibreChat => pb::ImportFormat::Librechat,
    }
}

fn count(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn outcome_to_proto(outcome: &Outcome) -> pb::ImportedConversation {
    pb::ImportedConversation {
        session_id: outcome.session_id.clone(),
        source_id: outcome.source_id.clone(),
        title: outcome.title.clone(),
        created: outcome.created,
        messages_imported: count(outcome.messages_imported),
        messages_present: count(outcome.messages_present),
        messages_not_added: count(outcome.messages_not_added),
    }
}

fn summary_to_proto(format: Format, summary: &Summary) -> pb::ImportConversationsResponse {
    pb::ImportConversationsResponse {
        format: format_to_proto(format).into(),
        conversations_imported: count(summary.conversations_imported),
        conversations_present: count(summary.conversations_present),
        messages_imported: count(summary.messages_imported),
        messages_present: count(summary.messages_present),
        skipped_nodes: count(summary.skipped_nodes),
        reattached_messages: count(summary.reattached_messages),
        conversations: summary.conversations.iter().map(outcome_to_proto).collect(),
    }
}

/// The file and format a client streamed.
struct Upload {
    data: Vec<u8>,
    format: Option<Format>,
}

/// Reads the request stream into memory, up to `max_bytes` of file data.
async fn receive(
    stream: &mut Streaming<pb::ImportConversationsRequest>,
    max_bytes: usize,
) -> Result<Upload, Status> {
    let mut upload = Upload {
        data: Vec::new(),
        format: None,
    };
    let mut format_set = false;
    while let Some(chunk) = stream.message().await? {
        let format = format_from_proto(chunk.format)?;
        if format.is_some() {
            if format_set && upload.format != format {
                return Err(ApiError::invalid(
                    "format",
                    "differs from the format of an earlier request of the stream; set one \
                     format for the whole file",
                )
                .into());
            }
            upload.format = format;
            format_set = true;
        }
        if upload.data.len() + chunk.data.len() > max_bytes {
            return Err(ApiError::invalid(
                "data",
                format!(
                    "the file is larger than {max_bytes} bytes, the limit the \
                     chat.import_max_bytes setting sets; split the export into smaller files"
                ),
            )
            .into());
        }
        upload.data.extend_from_slice(&chunk.data);
    }
    if upload.data.is_empty() {
        return Err(
            ApiError::invalid("data", "is empty; send the bytes of the export file").into(),
        );
    }
    Ok(upload)
}

impl ChatApi {
    pub(super) async fn import_conversations_impl(
        &self,
        request: Request<Streaming<pb::ImportConversationsRequest>>,
    ) -> Result<pb::ImportConversationsResponse, Status> {
        let context = context(&request)?;
        let caller = Caller::of(&context)?;
        let mut stream = request.into_inner();
        let upload = receive(&mut stream, self.import_max_bytes).await?;
        let size = upload.data.len();

        let export = import::parse_on_own_thread(upload.data, upload.format, models::now())
            .await
            .map_err(ApiError::internal)?
            .map_err(|error| ApiError::invalid("data", error.to_string()))?;
        let summary = import::store::store(
            &self.database,
            &context,
            caller.tenant_id,
            caller.user_id,
            &export,
        )
        .await?;
        info!(
            tenant.id = caller.tenant_id,
            user.id = caller.user_id,
            import.format = export.format.as_str(),
            import.bytes = size,
            import.conversations = summary.conversations_imported,
            import.messages = summary.messages_imported,
            "imported conversations"
        );
        Ok(summary_to_proto(export.format, &summary))
    }
}
