//! `ally.v1.AuditService`: reading a tenant's audit trail, page by page or as one export stream.

use chrono::NaiveDateTime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::convert::{from_timestamp, json_to_struct, timestamp};
use super::{ApiError, context, paging, validate};
use crate::auth::RequestContext;
use crate::db::Database;
use crate::models::{self, AuditLog};
use crate::proto::ally::v1 as pb;
use crate::proto::ally::v1::audit_service_server::AuditService;
use crate::repo;
use crate::repo::audit::{AuditFilter, Order};

/// Entries per ExportAuditEntries message, below the 1000 the API promises at most.
const EXPORT_BATCH: i64 = 500;
/// Batches the export reads ahead of a slow client.
const EXPORT_BUFFER: usize = 2;

/// The AuditService handlers.
#[derive(Clone)]
pub struct AuditApi {
    database: Database,
}

impl AuditApi {
    pub fn new(database: Database) -> AuditApi {
        AuditApi { database }
    }

    /// Returns the tenant whose entries a call reads. Operators must name an existing tenant.
    /// Tenant callers may name only their own, and any other id is NOT_FOUND.
    async fn target_tenant(
        &self,
        context: &RequestContext,
        requested: &str,
    ) -> Result<String, ApiError> {
        let not_found = || ApiError::NotFound { resource: "tenant" };
        if let Some(own) = &context.tenant_id {
            return match requested {
                "" => Ok(own.clone()),
                id if id == own => Ok(own.clone()),
                _ => Err(not_found()),
            };
        }
        if requested.is_empty() {
            return Err(ApiError::invalid("tenant_id", "is required for operators"));
        }
        let id = validate::id("tenant_id", requested)?;
        let mut conn = self.database.read().await?;
        repo::tenants::find(&mut conn, &id)
            .await?
            .map(|tenant| tenant.id)
            .ok_or_else(not_found)
    }
}

/// Stored severity names in ascending order of seriousness.
const SEVERITIES: [&str; 3] = ["info", "warning", "critical"];

/// Checks a request's filter and converts it to the repository's form. Field names in errors
/// are prefixed with `filter.`.
fn audit_filter(filter: Option<&pb::AuditEntryFilter>) -> Result<AuditFilter, ApiError> {
    let Some(filter) = filter else {
        return Ok(AuditFilter::default());
    };
    let exact = |field: &str, value: &str, max: usize| -> Result<Option<String>, ApiError> {
        if value.chars().count() > max {
            return Err(ApiError::invalid(
                format!("filter.{field}"),
                format!("must be at most {max} characters"),
            ));
        }
        // No stored value starts or ends with whitespace, and MySQL's PAD SPACE collations
        // would match "x " to "x" while SQLite would not, so such filters are rejected.
        if value.trim() != value {
            return Err(ApiError::invalid(
                format!("filter.{field}"),
                "must not start or end with whitespace",
            ));
        }
        Ok((!value.is_empty()).then(|| value.to_string()))
    };
    let severities = match pb::AuditSeverity::try_from(filter.min_severity) {
        Ok(pb::AuditSeverity::Unspecified) => Vec::new(),
        Ok(pb::AuditSeverity::Info) => SEVERITIES[0..].to_vec(),
        Ok(pb::AuditSeverity::Warning) => SEVERITIES[1..].to_vec(),
        Ok(pb::AuditSeverity::Critical) => SEVERITIES[2..].to_vec(),
        Err(_) => {
            return Err(ApiError::invalid(
                "filter.min_severity",
                format!("{} is not an audit severity", filter.min_severity),
            ));
        }
    };
    let start = filter
        .start_time
        .as_ref()
        .map(|value| from_timestamp("filter.start_time", value))
        .transpose()?;
    let end = filter
        .end_time
        .as_ref()
        .map(|value| from_timestamp("filter.end_time", value))
        .transpose()?;
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(ApiError::invalid(
            "filter.end_time",
            "must not be before filter.start_time",
        ));
    }
    Ok(AuditFilter {
        event_type: exact("event_type", &filter.event_type, 100)?,
        severities: severities.into_iter().map(str::to_string).collect(),
        actor_id: exact("actor_id", &filter.actor_id, 64)?,
        resource_type: exact("resource_type", &filter.resource_type, 64)?,
        resource_id: exact("resource_id", &filter.resource_id, 64)?,
        start,
        end,
    })
}

fn actor_type_to_proto(actor_type: &str) -> pb::ActorType {
    match actor_type {
        "user" => pb::ActorType::User,
        "api_key" => pb::ActorType::ApiKey,
        "operator" => pb::ActorType::Operator,
        "system" => pb::ActorType::System,
        "anonymous" => pb::ActorType::Anonymous,
        _ => pb::ActorType::Unspecified,
    }
}

fn severity_to_proto(severity: &str) -> pb::AuditSeverity {
    match severity {
        "info" => pb::AuditSeverity::Info,
        "warning" => pb::AuditSeverity::Warning,
        "critical" => pb::AuditSeverity::Critical,
        _ => pb::AuditSeverity::Unspecified,
    }
}

/// Converts a stored entry to the API message.
fn audit_entry_to_proto(entry: &AuditLog) -> pb::AuditEntry {
    pb::AuditEntry {
        id: entry.id.clone(),
        tenant_id: entry.tenant_id.clone(),
        actor_type: actor_type_to_proto(&entry.actor_type).into(),
        actor_id: entry.actor_id.clone().unwrap_or_default(),
        event_type: entry.event_type.clone(),
        resource_type: entry.resource_type.clone().unwrap_or_default(),
        resource_id: entry.resource_id.clone().unwrap_or_default(),
        severity: severity_to_proto(&entry.severity).into(),
        request_id: entry.request_id.clone().unwrap_or_default(),
        ip_address: entry.ip_address.clone().unwrap_or_default(),
        metadata: Some(json_to_struct(&entry.metadata)),
        create_time: Some(timestamp(entry.created_at)),
    }
}

/// The part of a list request a page token is bound to.
#[derive(serde::Serialize)]
struct ListFingerprint<'a> {
    tenant_id: &'a str,
    filter: &'a AuditFilter,
}

/// Sends every entry of `tenant_id` that matches `filter`, oldest first, in batches to `sender`.
/// Each batch is read on a connection of its own, which returns to the pool before the batch
/// waits for the client. Stops when the client goes away.
async fn export(
    database: Database,
    tenant_id: String,
    filter: AuditFilter,
    sender: mpsc::Sender<Result<pb::ExportAuditEntriesResponse, Status>>,
) {
    let mut after: Option<(NaiveDateTime, String)> = None;
    loop {
        let page = async {
            let mut conn = database.read().await?;
            let rows = repo::audit::list(
                &mut conn,
                &tenant_id,
                &filter,
                Order::OldestFirst,
                after.clone(),
                EXPORT_BATCH,
            )
            .await?;
            Ok::<_, ApiError>(rows)
        }
        .await;
        let rows = match page {
            Ok(rows) => rows,
            Err(error) => {
                warn!(tenant.id = %tenant_id, error = %error, "reading audit entries for an export failed");
                let _ = sender.send(Err(Status::from(error))).await;
                return;
            }
        };
        let last_page = (rows.len() as i64) < EXPORT_BATCH;
        after = rows.last().map(|last| (last.created_at, last.id.clone()));
        if !rows.is_empty() {
            let batch = pb::ExportAuditEntriesResponse {
                entries: rows.iter().map(audit_entry_to_proto).collect(),
            };
            if sender.send(Ok(batch)).await.is_err() {
                debug!(tenant.id = %tenant_id, "the client closed an audit export early");
                return;
            }
        }
        if last_page {
            return;
        }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let tenant_id = self.target_tenant(&context, &request.tenant_id).await?;
        let size = paging::page_size(request.page_size)?;
        let filter = audit_filter(request.filter.as_ref())?;
        let fingerprint = paging::fingerprint(&ListFingerprint {
            tenant_id: &tenant_id,
            filter: &filter,
        });
        let after: Option<(NaiveDateTime, String)> =
            paging::decode(&request.page_token, &fingerprint)?;

        let mut conn = self.database.read().await.map_err(ApiError::from)?;
        let mut rows = repo::audit::list(
            &mut conn,
            &tenant_id,
            &filter,
            Order::NewestFirst,
            after,
            size + 1,
        )
        .await
        .map_err(ApiError::from)?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => paging::encode(&fingerprint, (last.created_at, &last.id)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEntriesResponse {
            audit_entries: rows.iter().map(audit_entry_to_proto).collect(),
            next_page_token,
        }))
    }

    type ExportAuditEntriesStream = ReceiverStream<Result<pb::ExportAuditEntriesResponse, Status>>;

    async fn export_audit_entries(
        &self,
        request: Request<pb::ExportAuditEntriesRequest>,
    ) -> Result<Response<Self::ExportAuditEntriesStream>, Status> {
        let context = context(&request)?;
        let request = request.into_inner();
        let tenant_id = self.target_tenant(&context, &request.tenant_id).await?;
        let mut filter = audit_filter(request.filter.as_ref())?;
        // The export ends at the entries that existed when it started, so that it finishes even
        // while new entries keep arriving. The microsecond after the start is the first excluded
        // time, because stored times are truncated to microseconds.
        let started = models::now() + chrono::Duration::microseconds(1);
        filter.end = Some(filter.end.map_or(started, |end| end.min(started)));

        let (sender, receiver) = mpsc::channel(EXPORT_BUFFER);
        tokio::spawn(export(self.database.clone(), tenant_id, filter, sender));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn empty_filter_matches_everything() {
        let filter = audit_filter(Some(&pb::AuditEntryFilter::default())).unwrap();

        assert!(filter.event_type.is_none());
        assert!(filter.severities.is_empty());
        assert!(filter.start.is_none());
        assert!(filter.end.is_none());
    }

    #[test]
    fn min_severity_includes_higher() {
        let request = pb::AuditEntryFilter {
            min_severity: pb::AuditSeverity::Warning.into(),
            ..Default::default()
        };

        let filter = audit_filter(Some(&request)).unwrap();

        assert_eq!(filter.severities, ["warning", "critical"]);
    }

    #[test]
    fn unknown_severity_rejected() {
        let request = pb::AuditEntryFilter {
            min_severity: 42,
            ..Default::default()
        };

        let status = Status::from(audit_filter(Some(&request)).unwrap_err());

        assert!(
            status.message().contains("filter.min_severity"),
            "{status:?}"
        );
    }

    #[test]
    fn end_before_start_rejected() {
        let request = pb::AuditEntryFilter {
            start_time: at(200),
            end_time: at(100),
            ..Default::default()
        };

        let status = Status::from(audit_filter(Some(&request)).unwrap_err());

        assert!(status.message().contains("filter.end_time"), "{status:?}");
    }

    #[test]
    fn equal_start_and_end_accepted() {
        let request = pb::AuditEntryFilter {
            start_time: at(100),
            end_time: at(100),
            ..Default::default()
        };

        assert!(audit_filter(Some(&request)).is_ok());
    }

    #[test]
    fn overlong_event_type_rejected() {
        let request = pb::AuditEntryFilter {
            event_type: "x".repeat(101),
            ..Default::default()
        };

        let status = Status::from(audit_filter(Some(&request)).unwrap_err());

        assert!(status.message().contains("filter.event_type"), "{status:?}");
    }

    #[test]
    fn stored_names_convert() {
        assert_eq!(actor_type_to_proto("api_key"), pb::ActorType::ApiKey);
        assert_eq!(actor_type_to_proto("system"), pb::ActorType::System);
        assert_eq!(severity_to_proto("critical"), pb::AuditSeverity::Critical);
        assert_eq!(severity_to_proto("bogus"), pb::AuditSeverity::Unspecified);
    }
}
