//! Keeps `grpc.health.v1.Health` accurate: SERVING only while the database responds and the
//! schema has every migration this binary carries.

use std::time::Duration;

use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::db::{Database, migrations};

/// The shortest time a check may take before it counts as failed, so that a short check
/// interval does not mark a slow but working database as down.
const MIN_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Monitor {
    database: Database,
    reporter: HealthReporter,
    interval: Duration,
}

impl Monitor {
    pub(super) fn new(database: Database, reporter: HealthReporter, interval: Duration) -> Self {
        Monitor {
            database,
            reporter,
            interval,
        }
    }

    /// Checks the database every interval until `shutdown` turns true, then reports NOT_SERVING
    /// so that load balancers stop sending new calls while in-flight ones finish.
    pub(super) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut serving: Option<bool> = None;
        loop {
            let result = self.check().await;
            let healthy = result.is_ok();
            if serving != Some(healthy) {
                match &result {
                    Ok(()) => info!("database is reachable and the schema is current; SERVING"),
                    Err(reason) => warn!(reason = %reason, "health check failed; NOT_SERVING"),
                }
                self.set(healthy).await;
                serving = Some(healthy);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = async { shutdown.wait_for(|stop| *stop).await.map(drop) } => {
                    self.set(false).await;
                    return;
                }
            }
        }
    }

    async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
    }

    async fn check(&self) -> Result<(), String> {
        let timeout = self.interval.max(MIN_CHECK_TIMEOUT);
        let check = async {
            let mut conn = self.database.read().await.map_err(|e| e.to_string())?;
            let status = migrations::status(&mut conn)
                .await
                .map_err(|e| format!("reading the schema version failed: {e}"))?;
            match status.pending().next() {
                None => Ok(()),
                Some(missing) => Err(format!("migration {missing} is not applied")),
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .unwrap_or_else(|_| Err(format!("the database did not answer within {timeout:?}")))
    }
}
