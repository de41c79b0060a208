//! The PostgreSQL store: many worker processes, on many machines, on one database.
//!
//! A saga's row holds its state (the fold of its writes, as JSON), its context, its lease and, for
//! queries, its status; its history is one row per entry. A write locks the saga's row
//! (`FOR UPDATE`), checks the fence against it, then updates the row and appends the history in
//! the same transaction. Creates and writes are committed in groups (see [`batch`]): whatever
//! is queued while a transaction runs goes into the next one, so that many sagas in flight
//! share commits. Every other request is a transaction of its own on a pooled connection;
//! `acquire` takes sagas with `FOR UPDATE SKIP LOCKED`, so that concurrent workers never take
//! the same one and never wait for each other. Every statement is prepared once per connection.
//!
//! Every table lives in one schema of the database (`public` unless
//! [`PostgresOptions::schema`] names another), so that several stores, or tests, can share a
//! database.

/// Retries of one request while the database cannot be reached, or aborted its transaction (a
/// deadlock, a serialization failure): with backoff (from 50 ms, doubling up to 2 s), for up to
/// the store's outage timeout.
pub(crate) struct Retry {
    deadline: tokio::time::Instant,
    delay: Duration,
    /// Whether an attempt was made already (and may have committed before its connection
    /// dropped).
    retried: bool,
}

impl Retry {
    pub(crate) fn new(outage: Duration) -> Self {
        Retry {
            deadline: tokio::time::Instant::now() + outage,
            delay: Duration::from_millis(50),
            retried: false,
        }
    }

    /// The answer, or `None` after waiting for another attempt.
    pub(crate) async fn after<T>(
        &mut self,
        result: Result<T, StoreError>,
    ) -> Option<Result<T, StoreError>> {
        match result {
            Err(error)
                if matches!(
                    error.kind(),
                    StoreErrorKind::Unavailable | StoreErrorKind::Busy
                ) && tokio::time::Instant::now() + self.delay < self.deadline =>
            {
                tracing::warn!(%error, delay = ?self.delay, "the database cannot serve the request; retrying");
                tokio::time::sleep(self.delay).await;
                self.delay = (self.delay * 2).min(Duration::from_secs(2));
                self.retried = true;
                None
            }
            done => Some(done),
        }
    }
}

/// Runs `$body` with `$client`, a connection of `$db` (a [`Connections`]), and `$retried` (see
/// [`Retry`]), again while the database cannot be reached. (A macro rather than a function taking an async closure: the
/// closure's future could not be shown `Send` for every lifetime of its connection.)
macro_rules! retrying {
    ($db:expr, |$client:ident, $retried:ident| $body:expr) => {{
        let mut retry = $crate::store::postgres::Retry::new($db.outage);
        loop {
            let result = match $db.client().await {
                Ok(mut connection) => {
                    let $client = &mut connection;
                    let $retried = retry.retried;
                    $body.await
                }
                Err(error) => Err(error),
            };
            if let Some(done) = retry.after(result).await {
                break done;
            }
        }
    }};
}

/// The pool, and how long a request waits for the database to come back.
#[derive(Clone)]
pub(crate) struct Connections {
    pool: Pool,
    outage: Duration,
}

impl Connections {
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(rows::pool_error)
    }
}

mod batch;
mod columns;
mod listen;
mod reads;
mod rows;
mod schema;
mod types;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Config, ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime};

use super::{
    Acquire, CorruptRecord, Created, Fence, Held, LeaseRequest, NewSaga, SagaQuery, SagaRecord,
    SagaStore, SagaSummary, StatusCount, StoreError, StoreErrorKind, StoreFuture, Write,
};
use crate::event::SagaEvent;
use crate::{OperatorRequest, Refusal, SagaId, SagaShape};

pub use schema::POSTGRES_SCHEMA_VERSION;

/// How many transactions of creates and writes a store runs at once (see [`batch`]).
const WRITE_LANES: usize = 4;

/// How to connect a [`PostgresStore`]: `PostgresStore::options(url).schema("sagas").connect()`.
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresOptions {
    url: String,
    schema: String,
    pool_size: usize,
    outage: Duration,
    listen: bool,
    create: bool,
}

impl PostgresOptions {
    /// The schema the store's tables live in (default `public`); created if missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many connections the store's pool holds at most (default 16).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// How long a request keeps trying, with backoff, while the database cannot be reached (a
    /// restart, a dropped connection) before it fails (default 30 s). A run whose write waits
    /// goes on once the database is back; past its lease, another worker takes the saga over.
    pub fn outage_timeout(mut self, timeout: Duration) -> Self {
        self.outage = timeout;
        self
    }

    /// Whether the store listens (`LISTEN`) for other processes' notifications that sagas are
    /// due, so that its workers take a new saga within milliseconds (default `true`; it holds
    /// one connection of its own). Turn it off behind a connection pooler in transaction mode
    /// (PgBouncer), where `LISTEN` does not work: workers then look every renewal interval
    /// ([`crate::EngineBuilder::renew_interval`]).
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// Whether connecting creates the store's schema and tables when they are missing (default
    /// `true`). Tools that only look at an existing store turn it off: a schema that holds no
    /// saga store is then an error (`StoreErrorKind::NotFound`), and nothing is created.
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Connects, creating the schema (or checking its version) before anything else is written;
    /// waits for a database that cannot be reached yet up to the outage timeout.
    pub async fn connect(self) -> Result<PostgresStore, StoreError> {
        PostgresStore::connect_with(self).await
    }
}

/// A durable store shared by any number of worker processes through one PostgreSQL database.
///
/// ```no_run
/// # async fn demo() -> Result<(), saga_runtime::store::StoreError> {
/// use saga_runtime::store::PostgresStore;
///
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/test").await?;
/// let engine = saga_runtime::Engine::builder().store(store)/* .register::<OrderSaga>(deps) */.build();
/// # Ok(()) }
/// ```
pub struct PostgresStore {
    db: Connections,
    sql: Arc<rows::Sql>,
    batches: batch::Batches,
    /// Hints that sagas are due, and the task that listens for them (none if not listening).
    hints: tokio::sync::watch::Receiver<u64>,
    listener: Option<tokio::task::JoinHandle<()>>,
    /// Whether the schema records saga types (version 2 on; a store that does not create reads
    /// a version 1 schema as it is).
    types: bool,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.sql.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Options for the store at `url` (a `postgres://` URL).
    pub fn options(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            schema: "public".to_owned(),
            pool_size: 16,
            outage: Duration::from_secs(30),
            listen: true,
            create: true,
        }
    }

    /// Connects to the database at `url`, tables in its `public` schema.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        Self::options(url).connect().await
    }

    async fn connect_with(options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        if !options
            .schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || options.schema.is_empty()
        {
            return Err(StoreError::new(
                StoreErrorKind::Invalid,
                format!(
                    "schema name `{}`: use letters, digits and underscores",
                    options.schema
                ),
            ));
        }
        let mut config = Config::new();
        config.url = Some(options.url.clone());
        config.manager = Some(ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        });
        config.pool = Some(PoolConfig::new(options.pool_size));
        let pool = config
            .create_pool(Some(Runtime::Tokio1), tokio_postgres::NoTls)
            .map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Invalid,
                    format!("cannot use the PostgreSQL URL: {e}"),
                )
            })?;
        let db = Connections {
            pool,
            outage: options.outage,
        };
        // A worker that starts while the database restarts waits for it, as requests do.
        let version = retrying!(db, |client, _retried| schema::migrate(
            client,
            &options.schema,
            options.create
        ))?;
        let sql = Arc::new(rows::Sql::new(&options.schema));
        let (sender, hints) = tokio::sync::watch::channel(0);
        let listener = options
            .listen
            .then(|| listen::start(options.url.clone(), options.schema.clone(), sender));
        Ok(PostgresStore {
            batches: batch::Batches::start(db.clone(), Arc::clone(&sql), WRITE_LANES),
            db,
            sql,
            hints,
            listener,
            types: version >= 2,
        })
    }
}

impl SagaStore for PostgresStore {
    fn create<'a>(&'a self, saga: NewSaga, writes: &mut Vec<Write>) -> StoreFuture<'a, Created> {
        let writes = std::mem::take(writes);
        StoreFuture::new(self.batches.create(saga, writes))
    }

    fn write<'a>(
        &'a self,
        id: SagaId,
        fence: Fence,
        writes: &mut Vec<Write>,
    ) -> StoreFuture<'a, u64> {
        let writes = std::mem::take(writes);
        StoreFuture::new(self.batches.write(id, fence, writes))
    }

    fn acquire(&self, request: Acquire) -> StoreFuture<'_, Vec<Result<SagaRecord, CorruptRecord>>> {
        StoreFuture::new(async move {
            let request = &request;
            retrying!(self.db, |client, _retried| rows::acquire(
                client, &self.sql, request
            ))
        })
    }

    fn renew(&self, owner: &str, ids: &[SagaId], duration: Duration) -> StoreFuture<'_, Vec<Held>> {
        let owner = owner.to_owned();
        let ids: Vec<String> = ids.iter().map(SagaId::to_string).collect();
        StoreFuture::new(async move {
            let client = self.db.client().await?;
            rows::renew(&client, &self.sql, &owner, &ids, duration).await
        })
    }

    fn release(
        &self,
        id: SagaId,
        fence: Fence,
        wake_at: Option<SystemTime>,
    ) -> StoreFuture<'_, ()> {
        StoreFuture::new(async move {
            retrying!(self.db, |client, _retried| rows::release(
                client, &self.sql, id, fence, wake_at
            ))
        })
    }

    fn next_wake(&self, types: Option<Vec<String>>) -> StoreFuture<'_, Option<SystemTime>> {
        StoreFuture::new(async move {
            let types = &types;
            retrying!(self.db, |client, _retried| reads::next_wake(
                &***client,
                &self.sql,
                types.clone()
            ))
        })
    }

    fn request(
        &self,
        id: SagaId,
        request: OperatorRequest,
        lease: Option<LeaseRequest>,
    ) -> StoreFuture<'_, Result<SagaRecord, Refusal>> {
        StoreFuture::new(async move {
            let lease = &lease;
            retrying!(self.db, |client, _retried| rows::request(
                client,
                &self.sql,
                id,
                request,
                lease.clone()
            ))
        })
    }

    fn load(&self, id: SagaId) -> StoreFuture<'_, Option<SagaRecord>> {
        StoreFuture::new(async move {
            let loaded = retrying!(self.db, |client, _retried| reads::load(
                &***client, &self.sql, id
            ))?;
            match loaded {
                None => Ok(None),
                Some(Ok(record)) => Ok(Some(record)),
                Some(Err(corrupt)) => Err(StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("saga {}: {}", corrupt.id, corrupt.message),
                )),
            }
        })
    }

    fn history(
        &self,
        id: SagaId,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'_, Option<Vec<SagaEvent>>> {
        StoreFuture::new(async move {
            retrying!(self.db, |client, _retried| reads::history(
                &***client, &self.sql, id, from, limit
            ))
        })
    }

    fn list(&self, query: SagaQuery) -> StoreFuture<'_, Vec<SagaSummary>> {
        StoreFuture::new(async move {
            let query = &query;
            retrying!(self.db, |client, _retried| reads::list(
                &***client, &self.sql, query
            ))
        })
    }

    fn wakes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.listener.is_some().then(|| self.hints.clone())
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        StoreFuture::new(async move {
            retrying!(self.db, |client, _retried| reads::counts(
                &***client, &self.sql
            ))
        })
    }

    fn record_type(&self, shape: SagaShape) -> StoreFuture<'_, ()> {
        if !self.types {
            return StoreFuture::ready(Ok(()));
        }
        StoreFuture::new(async move {
            let json = serde_json::to_string(&shape).map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Corrupt,
                    format!("cannot encode a shape: {e}"),
                )
            })?;
            let (name, fingerprint, json) = (&shape.name, &shape.fingerprint(), &json);
            retrying!(self.db, |client, _retried| types::record(
                &***client,
                &self.sql,
                name,
                fingerprint,
                json
            ))
        })
    }

    fn saga_types(&self) -> StoreFuture<'_, Vec<SagaShape>> {
        if !self.types {
            return StoreFuture::ready(Ok(Vec::new()));
        }
        StoreFuture::new(async move {
            retrying!(self.db, |client, _retried| types::all(
                &***client, &self.sql
            ))
        })
    }
}
