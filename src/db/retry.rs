//! Retrying transactions that failed for reasons that a second attempt can fix.
//!
//! MySQL reports a deadlock (1213) or a lock wait time-out (1205), and a Galera cluster reports
//! a write conflict between nodes as 1213 at commit. SQLite reports "database is locked" when
//! the busy timeout runs out. In each case the whole transaction rolled back, so running it
//! again is safe as long as its body does nothing outside the database.

use std::future::Future;
use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error};
use tracing::debug;

/// Attempts of one transaction, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// Back-off before the second attempt; it doubles for each later one, plus up to as much again
/// at random so that colliding writers spread out.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// Errors that report whether a retry may succeed.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for Error {
    fn is_transient(&self) -> bool {
        match self {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            Error::DatabaseError(_, info) => {
                let message = info.message();
                message.contains("Lock wait timeout exceeded")
                    || message.contains("database is locked")
            }
            _ => false,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for a lasting reason, or [`MAX_ATTEMPTS`] pass.
pub async fn with_retry<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Transient + std::fmt::Display,
{
    let mut backoff = FIRST_BACKOFF;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if error.is_transient() && tries < MAX_ATTEMPTS => {
                let jitter = rand::random_range(0..=backoff.as_micros() as u64);
                debug!(attempt = tries, error = %error, "transaction failed transiently; retrying");
                tokio::time::sleep(backoff + Duration::from_micros(jitter)).await;
                backoff *= 2;
                tries += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Failure(bool);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure (transient: {})", self.0)
        }
    }

    impl Transient for Failure {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn transient_failures_retried() {
        let calls = AtomicU32::new(0);
        let result = with_retry(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Failure(true))
            } else {
                Ok(7)
            }
        })
        .await;

        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn lasting_failure_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Failure> = with_retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(false))
        })
        .await;

        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Failure> = with_retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure(true))
        })
        .await;

        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }
}
