//! Password hashing with argon2id at the OWASP-recommended cost (19 MiB of memory, two passes,
//! one lane), on threads of its own, one per CPU, so that hashing never stalls the async
//! workers and runs at most one hash per CPU at a time.

use std::sync::{Arc, Mutex, OnceLock, mpsc};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;
use tracing::warn;

/// Shortest password accepted for a new or changed password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Maximum password length in bytes, which bounds the hashing work one request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A failure of the hashing itself, not a wrong password.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Hashes `password` into a PHC string such as `$argon2id$v=19$m=19456,t=2,p=1$...`.
pub async fn hash(password: SecretString) -> Result<String, PasswordError> {
    run_limited(move || {
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| PasswordError(error.to_string()))
    })
    .await?
}

/// Checks `password` against a stored PHC string. With no stored hash (an unknown email or an
/// SSO-only user) it still hashes once, so the response time does not tell the cases apart.
pub async fn verify(password: SecretString, stored: Option<String>) -> Result<bool, PasswordError> {
    run_limited(move || {
        let argon2 = Argon2::default();
        match stored {
            Some(stored) => Ok(argon2
                .verify_password(password.expose_secret().as_bytes(), stored.as_str())
                .is_ok()),
            None => {
                let _ = argon2.hash_password(password.expose_secret().as_bytes());
                Ok(false)
            }
        }
    })
    .await?
}

/// A hash to run on one of the hashing threads.
type Job = Box<dyn FnOnce() + Send>;

/// Returns the queue of the hashing threads, starting them on first use: one per CPU. Each
/// argon2id run allocates 19 MiB and keeps a core busy, so more at once would only add memory
/// without adding throughput. Few long-lived threads also bound the memory that stays with the
/// process after a hash. On tokio's blocking pool any of up to 512 threads could run a hash, and
/// the benchmark's server then kept 600 MiB resident after a Login run.
fn hashing_queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..std::thread::available_parallelism().map_or(1, usize::from) {
            let receiver = receiver.clone();
            let started = std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || run_jobs(&receiver));
            if let Err(error) = started {
                warn!(error = %error, "starting a password hashing thread failed");
            }
        }
        sender
    })
}

/// Runs jobs from `receiver` until every sender is gone.
fn run_jobs(receiver: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is released before the job runs, so the other threads take the next jobs.
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        // A panicking hash drops its reply channel, which its caller reports as an error.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Runs `work` on a hashing thread once one is free.
async fn run_limited<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordError> {
    let (reply, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(work());
    });
    hashing_queue()
        .send(job)
        .map_err(|_| PasswordError("no password hashing thread is running".into()))?;
    result
        .await
        .map_err(|_| PasswordError("a password hashing thread failed".into()))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{hash, run_limited, verify};

    #[tokio::test]
    async fn hash_then_verify() {
        let stored = hash(SecretString::from("correct horse battery"))
            .await
            .unwrap();

        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            verify(
                SecretString::from("correct horse battery"),
                Some(stored.clone())
            )
            .await
            .unwrap()
        );
        assert!(
            !verify(SecretString::from("wrong horse battery"), Some(stored))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn verify_without_hash_fails() {
        assert!(
            !verify(SecretString::from("anything at all"), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_limited_to_cpus() {
        let slots = std::thread::available_parallelism().map_or(1, usize::from);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));

        let mut tasks = Vec::new();
        for _ in 0..slots * 4 {
            let (running, peak) = (running.clone(), peak.clone());
            tasks.push(tokio::spawn(run_limited(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            })));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }

        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= slots, "{peak} hashes ran at once on {slots} CPUs");
    }
}
