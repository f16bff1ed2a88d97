//! Whether the store accepts writes, and why not when it does not.
//!
//! A full disk, an exhausted quota, a file system remounted read-only or an I/O error make
//! the store refuse writes. That is correct (nothing acknowledged is lost, nothing is
//! acknowledged that is not durable), but it is an operator's problem, not a bug: the engines
//! classify such failures as [`StoreError::Unavailable`] with an [`Unavailable`] cause, and
//! [`HealthWatchedStore`], the engine as the vault holds it, publishes the latest cause on
//! a watch channel ([`StoreHealth`]). The daemon follows that channel to report
//! `NOT_SERVING` on its health service, so a load balancer stops sending traffic.
//!
//! The flag is cleared only by proof that writes work again: a durable commit or flush
//! that succeeds. The embedded store never gives that proof after a failed flush (its
//! group commit refuses every later write: sled's state after an I/O error is not trusted
//! until it is reopened), so there health comes back with a restart. PostgreSQL recovers
//! by itself once the database has space again and a write commits.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Batch, Store, StoreError, Table};

/// Why the store refuses writes: what happened, in words an operator acts on. Each cause's
/// text names the remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The data directory's file system is full (`ENOSPC`).
    #[error("no space left on the data directory's file system; free space and restart the daemon")]
    NoSpace,
    /// The disk quota of the daemon's user on the data directory is exhausted (`EDQUOT`).
    #[error(
        "the disk quota on the data directory's file system is exhausted; raise the quota or \
         free space, then restart the daemon"
    )]
    QuotaExceeded,
    /// The data directory's file system is read-only (`EROFS`).
    #[error(
        "the data directory's file system is read-only; remount it read-write and restart \
         the daemon"
    )]
    ReadOnly,
    /// Another I/O error of the embedded store (`EIO` and the like).
    #[error(
        "an I/O error on the data directory (see the server log); check the disk and restart \
         the daemon"
    )]
    Io,
    /// PostgreSQL's disk is full (SQLSTATE 53100).
    #[error(
        "the PostgreSQL server's disk is full (SQLSTATE 53100); free space on the database \
         server: the daemon serves again once a write commits"
    )]
    DatabaseDiskFull,
    /// PostgreSQL lacks another resource (SQLSTATE class 53: memory, connections,
    /// configuration limits).
    #[error(
        "the PostgreSQL server is out of resources (SQLSTATE {0}); see the database server's \
         log: the daemon serves again once a write commits"
    )]
    DatabaseResources(&'static str),
}

impl Unavailable {
    /// The cause of an I/O error of the embedded store or of a file in the data directory.
    /// Every I/O error counts: the file system under the store is not working.
    pub fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::StorageFull => Self::NoSpace,
            ErrorKind::QuotaExceeded => Self::QuotaExceeded,
            ErrorKind::ReadOnlyFilesystem => Self::ReadOnly,
            _ => Self::Io,
        }
    }

    /// The cause of a PostgreSQL error with this SQLSTATE, when it is one of class 53
    /// ("insufficient resources"). Other codes are not the store being unavailable.
    pub fn of_sqlstate(code: &str) -> Option<Self> {
        const CLASS_53: [&str; 5] = ["53000", "53100", "53200", "53300", "53400"];
        match code {
            "53100" => Some(Self::DatabaseDiskFull),
            _ if code.starts_with("53") => Some(Self::DatabaseResources(
                CLASS_53
                    .iter()
                    .find(|c| **c == code)
                    .copied()
                    .unwrap_or("53xxx"),
            )),
            _ => None,
        }
    }
}

/// The store's health as the vault last saw it: `None` while it accepts writes.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    state: Arc<watch::Sender<Option<Unavailable>>>,
}

impl Default for StoreHealth {
    fn default() -> Self {
        Self {
            state: Arc::new(watch::channel(None).0),
        }
    }
}

impl StoreHealth {
    /// Follows the health: the current value, and a change notification.
    pub fn subscribe(&self) -> watch::Receiver<Option<Unavailable>> {
        self.state.subscribe()
    }

    /// The current cause, if the store refuses writes.
    pub fn current(&self) -> Option<Unavailable> {
        *self.state.borrow()
    }

    fn observe<T>(&self, result: &Result<T, StoreError>, proves_writes: bool) {
        match result {
            Err(StoreError::Unavailable { cause, detail }) => {
                let cause = *cause;
                let changed = self.state.send_if_modified(|s| {
                    let changed = *s != Some(cause);
                    *s = Some(cause);
                    changed
                });
                if changed {
                    tracing::error!(
                        target: "vault::store",
                        %cause,
                        %detail,
                        "the store refuses writes; calls get UNAVAILABLE until this is fixed"
                    );
                }
            }
            Ok(_) if proves_writes => {
                let recovered = self.state.send_if_modified(|s| s.take().is_some());
                if recovered {
                    tracing::warn!(target: "vault::store", "the store accepts writes again");
                }
            }
            _ => {}
        }
    }
}

/// An engine whose failures feed a [`StoreHealth`]; see the module documentation.
pub struct HealthWatchedStore {
    inner: Arc<dyn Store>,
    health: StoreHealth,
}

impl HealthWatchedStore {
    /// Wraps `inner`, reporting into `health`.
    pub fn new(inner: Arc<dyn Store>, health: StoreHealth) -> Self {
        Self { inner, health }
    }
}

#[async_trait]
impl Store for HealthWatchedStore {
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.inner.get(table, key).await;
        self.health.observe(&r, false);
        r
    }

    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let r = self.inner.scan_prefix(table, prefix).await;
        self.health.observe(&r, false);
        r
    }

    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let r = self.inner.scan_range(table, start, end, limit).await;
        self.health.observe(&r, false);
        r
    }

    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let r = self.inner.last(table).await;
        self.health.observe(&r, false);
        r
    }

    async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        // Applied is not durable: success proves nothing about the disk.
        let r = self.inner.apply(batch).await;
        self.health.observe(&r, false);
        r
    }

    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        // Applied is not durable, as for `apply`.
        let r = self.inner.apply_all(batches).await;
        self.health.observe(&r, false);
        r
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let r = self.inner.commit(batch).await;
        self.health.observe(&r, true);
        r
    }

    async fn sync(&self) -> Result<(), StoreError> {
        let r = self.inner.sync().await;
        self.health.observe(&r, true);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_their_cause() {
        use std::io::Error;
        let of = |code| Unavailable::of_io(&Error::from_raw_os_error(code));
        assert_eq!(of(28), Unavailable::NoSpace); // ENOSPC
        assert_eq!(of(122), Unavailable::QuotaExceeded); // EDQUOT
        assert_eq!(of(30), Unavailable::ReadOnly); // EROFS
        assert_eq!(of(5), Unavailable::Io); // EIO
        assert_eq!(Unavailable::of_io(&Error::other("x")), Unavailable::Io);
    }

    #[test]
    fn sqlstate_class_53_is_unavailable_and_nothing_else() {
        assert_eq!(
            Unavailable::of_sqlstate("53100"),
            Some(Unavailable::DatabaseDiskFull)
        );
        assert_eq!(
            Unavailable::of_sqlstate("53200"),
            Some(Unavailable::DatabaseResources("53200"))
        );
        assert_eq!(
            Unavailable::of_sqlstate("53999"),
            Some(Unavailable::DatabaseResources("53xxx"))
        );
        for other in ["40001", "23505", "08006", "XX000", "57014"] {
            assert_eq!(Unavailable::of_sqlstate(other), None, "{other}");
        }
    }

    #[test]
    fn causes_name_the_remedy() {
        let text = Unavailable::NoSpace.to_string();
        assert!(text.contains("no space left"), "{text}");
        assert!(text.contains("free space and restart the daemon"), "{text}");
        assert!(
            Unavailable::DatabaseDiskFull
                .to_string()
                .contains("once a write commits")
        );
    }

    /// An engine whose writes fail with a cause until told otherwise.
    struct Flaky {
        failing: std::sync::Mutex<Option<Unavailable>>,
    }

    impl Flaky {
        fn result(&self) -> Result<(), StoreError> {
            match *self.failing.lock().unwrap() {
                Some(cause) => Err(StoreError::Unavailable {
                    cause,
                    detail: "test".into(),
                }),
                None => Ok(()),
            }
        }
    }

    #[async_trait]
    impl Store for Flaky {
        async fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.result().map(|()| None)
        }
        async fn scan_prefix(
            &self,
            _: Table,
            _: &[u8],
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
            Ok(Vec::new())
        }
        async fn scan_range(
            &self,
            _: Table,
            _: &[u8],
            _: Option<&[u8]>,
            _: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
            Ok(Vec::new())
        }
        async fn last(&self, _: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
            Ok(None)
        }
        async fn apply_all(&self, _: &[&Batch]) -> Result<(), StoreError> {
            self.result()
        }
        async fn commit(&self, _: Batch) -> Result<(), StoreError> {
            self.result()
        }
        async fn sync(&self) -> Result<(), StoreError> {
            self.result()
        }
    }

    #[tokio::test]
    async fn health_follows_failures_and_only_a_durable_write_clears_it() {
        let engine = Arc::new(Flaky {
            failing: std::sync::Mutex::new(None),
        });
        let health = StoreHealth::default();
        let store = HealthWatchedStore::new(engine.clone(), health.clone());
        let mut rx = health.subscribe();
        assert_eq!(health.current(), None);
        *engine.failing.lock().unwrap() = Some(Unavailable::DatabaseDiskFull);
        assert!(store.get(Table::Records, b"k").await.is_err());
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Some(Unavailable::DatabaseDiskFull));
        *engine.failing.lock().unwrap() = None;
        // A read that works again proves nothing about writes.
        store.get(Table::Records, b"k").await.unwrap();
        assert_eq!(health.current(), Some(Unavailable::DatabaseDiskFull));
        store.commit(Batch::new()).await.unwrap();
        assert_eq!(health.current(), None);
        assert!(rx.has_changed().unwrap());
    }
}
