//! Prometheus metrics over HTTP while consuming, on the embedded emulators:
//! a producer writes a record every 10 ms, a consumer reads them, and
//! `http://127.0.0.1:PORT/metrics` serves both as Prometheus text. Lease
//! and checkpoint events are printed as they happen.
//!
//! Run: `cargo run --example metrics [-- SECONDS]` (default 60), then
//! `curl -s http://127.0.0.1:PORT/metrics`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcheck::kinesis::{KinesisClient, StreamRef};
use kcheck::metrics::{Registry, CONTENT_TYPE};
use kcheck::transport::{AwsConfig, Credentials};
use kcheck::{Consumer, DynamoDbCheckpointer, Producer};
use kcheck_emulators::Emulators;

type Failure = Box<dyn std::error::Error>;

/// Answers every request on `listener` with the registry's text.
fn serve(listener: TcpListener, registry: Arc<Registry>) {
    for stream in listener.incoming().flatten() {
        let mut reader = BufReader::new(&stream);
        // The request line and headers, up to the empty line; any path.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let body = registry.render();
        let _ = write!(
            &stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
}

fn main() -> Result<(), Failure> {
    let seconds: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("SECONDS must be a number, got {arg:?}"))?,
        None => 60,
    };
    let emulators = Emulators::start();
    let config = |url: String| {
        AwsConfig::builder()
            .region("us-east-1")
            .endpoint_url(url)
            .credentials(Credentials::new("demo", "demo", None, None))
            .build()
    };
    let kinesis_config = config(emulators.kinesis_url())?;
    let kinesis = KinesisClient::new(&kinesis_config)?;
    let stream = StreamRef::from("kcheck-metrics");
    kinesis.create_stream(stream.name(), 2)?;
    kinesis.wait_for_stream_active(&stream, Duration::from_secs(10))?;

    let consumer = Arc::new(
        Consumer::builder(stream.as_str())
            .aws_config(kinesis_config.clone())
            .checkpointer(
                DynamoDbCheckpointer::builder("metrics-app")
                    .aws_config(config(emulators.dynamodb_url())?)
                    .build()?,
            )
            .on_event(|event| {
                eprintln!(
                    "event: {} shard {} of {} ({}) {}",
                    event.kind, event.shard_id, event.stream, event.group, event.message
                )
            })
            .build()?,
    );
    let producer = Arc::new(
        Producer::builder(stream.as_str())
            .aws_config(kinesis_config)
            .build()?,
    );
    let registry = Arc::new(Registry::new());
    registry.add_consumer(&consumer);
    registry.add_producer(&producer);

    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("metrics: http://{}/metrics", listener.local_addr()?);
    let server = registry.clone();
    std::thread::spawn(move || serve(listener, server));

    let end = Instant::now() + Duration::from_secs(seconds);
    let mut next_put = Instant::now();
    let mut read = 0u64;
    while Instant::now() < end {
        if Instant::now() >= next_put {
            producer.put(
                format!("record {read}").into_bytes(),
                &format!("key-{read}"),
                None,
            )?;
            next_put += Duration::from_millis(10);
        }
        if consumer.next_timeout(Duration::from_millis(10))?.is_some() {
            read += 1;
        }
    }
    println!("read {read} records");
    producer.close()?;
    consumer.close()?;
    Ok(())
}
