//! The local AWS emulators kcheck is tested against: ferrokinesis for Kinesis
//! and dynoxide for DynamoDB, served in-process on free loopback ports.
//!
//! Both run on one small Tokio runtime owned by [`Emulators`]; dropping it
//! stops the servers. The `kcheck-emulators` binary serves the same pair for
//! out-of-process users (Python and C tests, the benchmark).

use std::net::SocketAddr;
use std::time::Duration;

/// Knobs of the Kinesis emulator that tests turn.
#[derive(Debug, Clone)]
pub struct Options {
    /// Shard iterators older than this are rejected with ExpiredIteratorException.
    pub iterator_ttl_seconds: u64,
    /// AWS-like per-shard throughput limits (ProvisionedThroughputExceeded).
    pub enforce_limits: bool,
    /// Maximum open shards across all streams.
    pub shard_limit: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            iterator_ttl_seconds: 300,
            enforce_limits: false,
            shard_limit: 200,
        }
    }
}

/// A running pair of emulators. Dropping it shuts both down.
pub struct Emulators {
    kinesis: SocketAddr,
    dynamodb: SocketAddr,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Emulators {
    /// Starts both emulators with default options.
    pub fn start() -> Emulators {
        Self::start_with(Options::default())
    }

    /// Starts both emulators on fresh loopback ports.
    pub fn start_with(options: Options) -> Emulators {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kcheck-emulator")
            .enable_all()
            .build()
            .expect("emulator runtime");
        let (shutdown, watch) = tokio::sync::watch::channel(false);

        let store_options = ferrokinesis::store::StoreOptions {
            create_stream_ms: 0,
            delete_stream_ms: 0,
            update_stream_ms: 0,
            shard_limit: options.shard_limit,
            iterator_ttl_seconds: options.iterator_ttl_seconds,
            enforce_limits: options.enforce_limits,
            ..Default::default()
        };
        let (kinesis, dynamodb) = runtime.block_on(async {
            let kinesis_listener = bind_loopback().await;
            let dynamodb_listener = bind_loopback().await;
            let kinesis = kinesis_listener.local_addr().expect("kinesis address");
            let dynamodb = dynamodb_listener.local_addr().expect("dynamodb address");

            let (app, _store) = ferrokinesis::create_app(store_options);
            let kinesis_stopped = stopped(watch.clone());
            tokio::spawn(async move {
                axum::serve(kinesis_listener, app)
                    .with_graceful_shutdown(kinesis_stopped)
                    .await
            });
            let db = dynoxide::Database::memory().expect("dynoxide in-memory database");
            tokio::spawn(dynoxide::server::serve_with_shutdown(
                dynamodb_listener,
                db,
                stopped(watch),
            ));
            (kinesis, dynamodb)
        });
        Emulators {
            kinesis,
            dynamodb,
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT` of the Kinesis emulator.
    pub fn kinesis_url(&self) -> String {
        format!("http://{}", self.kinesis)
    }

    /// `http://127.0.0.1:PORT` of the DynamoDB emulator.
    pub fn dynamodb_url(&self) -> String {
        format!("http://{}", self.dynamodb)
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(true);
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Serves both emulators for another process: prints one JSON line with
/// the endpoints, `{"kinesis":"http://127.0.0.1:P","dynamodb":"http://127.0.0.1:Q"}`,
/// then serves until standard input closes (the parent exited or let go).
pub fn serve_until_stdin_closes(options: Options) {
    use std::io::{BufRead, Write};
    let emulators = Emulators::start_with(options);
    let mut out = std::io::stdout().lock();
    let announced = writeln!(
        out,
        "{{\"kinesis\":\"{}\",\"dynamodb\":\"{}\"}}",
        emulators.kinesis_url(),
        emulators.dynamodb_url()
    )
    .and_then(|_| out.flush());
    drop(out);
    if announced.is_err() {
        return;
    }
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
}

async fn bind_loopback() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

async fn stopped(mut watch: tokio::sync::watch::Receiver<bool>) {
    while !*watch.borrow() {
        if watch.changed().await.is_err() {
            return;
        }
    }
}
