//! `kcheck tail` and `kcheck put`: records out of and into a stream.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use kcheck::kinesis::aggregation::deaggregate;
use kcheck::kinesis::{IteratorPosition, StreamRef};
use kcheck::{Consumer, InitialPosition, Producer};
use md5::{Digest, Md5};
use serde::Serialize;

use crate::output::{epoch_millis, json_line};
use crate::{explain, table_of, Connection, Failure, GroupArgs};

#[derive(Args, Debug)]
pub struct TailArgs {
    /// The stream (a name or an ARN).
    stream: String,
    /// Where shards without a checkpoint start: trim-horizon, latest or
    /// timestamp:MILLIS.
    #[arg(long, default_value = "latest", value_parser = parse_from)]
    from: InitialPosition,
    /// Read as this consumer group, with its DynamoDB leases and
    /// checkpoints, so the next tail resumes where this one stopped.
    #[arg(long, value_name = "APP")]
    name: Option<String>,
    /// The group's lease table [kinesis-checkpoints-APP]; needs --name.
    #[arg(long, requires = "name")]
    table: Option<String>,
    /// Create the lease table when it is missing; needs --name.
    #[arg(long, requires = "name")]
    create_table: bool,
    /// How each record is printed [text; json with --json].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Stop after this many records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Stop after this many seconds without a record.
    #[arg(long, value_name = "SECS")]
    idle_exit: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// The data as it is, one record a line.
    Raw,
    /// Shard, sequence/sub, partition key, arrival and the data as text.
    Text,
    /// One JSON object a line; data as text when UTF-8, else base64.
    Json,
}

fn parse_from(text: &str) -> Result<InitialPosition, String> {
    match text {
        "trim-horizon" => return Ok(InitialPosition::TrimHorizon),
        "latest" => return Ok(InitialPosition::Latest),
        _ => {}
    }
    text.strip_prefix("timestamp:")
        .and_then(|millis| millis.parse().ok())
        .map(|millis| InitialPosition::AtTimestamp(UNIX_EPOCH + Duration::from_millis(millis)))
        .ok_or_else(|| "expected trim-horizon, latest or timestamp:MILLIS".to_owned())
}

/// One record as printed.
#[derive(Serialize)]
struct Printed<'a> {
    shard: &'a str,
    sequence: &'a str,
    sub_sequence: u64,
    partition_key: &'a str,
    /// Approximate arrival, milliseconds since the epoch.
    arrival: Option<u64>,
    /// `utf-8` or `base64`: how `data` is written.
    encoding: &'static str,
    data: String,
}

impl Printed<'_> {
    fn write(&self, format: Format, raw: &[u8], out: &mut impl Write) -> io::Result<()> {
        match format {
            Format::Raw => {
                out.write_all(raw)?;
                out.write_all(b"\n")
            }
            Format::Json => json_line(out, self),
            Format::Text => writeln!(
                out,
                "{} {}/{} key={} arrival={} {}",
                self.shard,
                self.sequence,
                self.sub_sequence,
                self.partition_key,
                self.arrival
                    .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                String::from_utf8_lossy(raw)
            ),
        }
    }
}

/// Where a record comes from.
struct Origin<'a> {
    shard: &'a str,
    sequence: &'a str,
    sub_sequence: u64,
    partition_key: &'a str,
    arrival: Option<SystemTime>,
}

/// Prints one record.
fn print_record(
    format: Format,
    out: &mut impl Write,
    origin: &Origin<'_>,
    data: &[u8],
) -> io::Result<()> {
    let (encoding, text) = match (format, std::str::from_utf8(data)) {
        (Format::Json, Ok(text)) => ("utf-8", text.to_owned()),
        (Format::Json, Err(_)) => ("base64", base64_simd::STANDARD.encode_to_string(data)),
        _ => ("utf-8", String::new()),
    };
    Printed {
        shard: origin.shard,
        sequence: origin.sequence,
        sub_sequence: origin.sub_sequence,
        partition_key: origin.partition_key,
        arrival: origin.arrival.map(epoch_millis),
        encoding,
        data: text,
    }
    .write(format, data, out)?;
    out.flush()
}

/// Counts printed records and tells when to stop.
struct Stop {
    limit: Option<u64>,
    idle: Option<Duration>,
    printed: u64,
    last: Instant,
}

impl Stop {
    fn printed(&mut self) {
        self.printed += 1;
        self.last = Instant::now();
    }

    fn reached(&self) -> bool {
        self.limit.is_some_and(|limit| self.printed >= limit)
            || self.idle.is_some_and(|idle| self.last.elapsed() >= idle)
            || crate::interrupted()
    }
}

pub fn tail(connection: &Connection, args: &TailArgs) -> Result<(), Failure> {
    let format = args.format.unwrap_or(if connection.json {
        Format::Json
    } else {
        Format::Text
    });
    let mut stop = Stop {
        limit: args.limit,
        idle: args.idle_exit.map(Duration::from_secs),
        printed: 0,
        last: Instant::now(),
    };
    if stop.limit == Some(0) {
        return Ok(());
    }
    crate::catch_interrupt()?;
    match &args.name {
        Some(name) => tail_group(connection, args, name, format, &mut stop),
        None => tail_shards(connection, args, format, &mut stop),
    }
}

/// As a consumer of the group: leases, and checkpoints of what was printed.
fn tail_group(
    connection: &Connection,
    args: &TailArgs,
    name: &str,
    format: Format,
    stop: &mut Stop,
) -> Result<(), Failure> {
    let group = GroupArgs {
        name: name.to_owned(),
        table: args.table.clone(),
    };
    let table = table_of(&group);
    let mut checkpointer = kcheck::DynamoDbCheckpointer::builder(name)
        .aws_config(connection.aws_config()?)
        .create_table(args.create_table);
    if let Some(table) = &args.table {
        checkpointer = checkpointer.table_name(table);
    }
    let consumer = Consumer::builder(&args.stream)
        .aws_config(connection.aws_config()?)
        .checkpointer(checkpointer.build()?)
        .initial_position(args.from.clone())
        .idle_poll_interval(Duration::from_millis(500))
        .build()
        .map_err(|e| explain(e, &table, Some(&args.stream)))?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = (|| -> Result<(), Failure> {
        while !stop.reached() {
            let Some(record) = consumer.next_timeout(Duration::from_millis(200))? else {
                if consumer.is_closed() {
                    break;
                }
                continue;
            };
            print_record(
                format,
                &mut out,
                &Origin {
                    shard: &record.shard_id,
                    sequence: &record.sequence_number,
                    sub_sequence: record.sub_sequence_number,
                    partition_key: &record.partition_key,
                    arrival: record.approximate_arrival_timestamp,
                },
                &record.data,
            )?;
            stop.printed();
        }
        // Everything printed is processed.
        Ok(consumer.checkpoint()?)
    })();
    let closed = consumer.close();
    result?;
    Ok(closed?)
}

/// One shard being read without a group.
struct ShardReader {
    iterator: Option<String>,
}

/// Every shard read directly, from `--from`; shards that appear later
/// (resharding) are read from their start.
fn tail_shards(
    connection: &Connection,
    args: &TailArgs,
    format: Format,
    stop: &mut Stop,
) -> Result<(), Failure> {
    let kinesis = connection.kinesis()?;
    let stream = StreamRef::from(args.stream.as_str());
    let not_found = |e| explain(e, "", Some(&args.stream));
    let start = match &args.from {
        InitialPosition::TrimHorizon => IteratorPosition::TrimHorizon,
        InitialPosition::Latest => IteratorPosition::Latest,
        InitialPosition::AtTimestamp(time) => IteratorPosition::AtTimestamp(*time),
    };
    let mut readers: BTreeMap<String, ShardReader> = BTreeMap::new();
    let mut listed = None::<Instant>;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    while !stop.reached() {
        if listed.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            let first = listed.is_none();
            for shard in kinesis.list_shards(&stream, None).map_err(not_found)? {
                if readers.contains_key(&shard.shard_id) {
                    continue;
                }
                let from = if first {
                    start.clone()
                } else {
                    IteratorPosition::TrimHorizon
                };
                let iterator = kinesis
                    .get_shard_iterator(&stream, &shard.shard_id, &from)
                    .map_err(not_found)?;
                readers.insert(
                    shard.shard_id,
                    ShardReader {
                        iterator: Some(iterator),
                    },
                );
            }
            listed = Some(Instant::now());
        }
        let mut got = false;
        for (shard, reader) in readers.iter_mut() {
            let Some(iterator) = reader.iterator.take() else {
                continue;
            };
            let output = kinesis.get_records(&iterator, 1000).map_err(not_found)?;
            reader.iterator = output.page.next_shard_iterator;
            for record in &output.records {
                let users = deaggregate(&record.data);
                let mut each = |sub: u64, key: &str, data: &[u8]| -> Result<bool, Failure> {
                    if stop.reached() {
                        return Ok(false);
                    }
                    print_record(
                        format,
                        &mut out,
                        &Origin {
                            shard,
                            sequence: &record.sequence_number,
                            sub_sequence: sub,
                            partition_key: key,
                            arrival: record.approximate_arrival_timestamp,
                        },
                        data,
                    )?;
                    stop.printed();
                    Ok(true)
                };
                let going = match &users {
                    Some(users) => users.iter().try_fold(true, |going, user| {
                        Ok::<_, Failure>(
                            going
                                && each(user.sub_sequence_number, &user.partition_key, &user.data)?,
                        )
                    })?,
                    None => each(0, &record.partition_key, &record.data)?,
                };
                got = true;
                if !going {
                    return Ok(());
                }
            }
        }
        if !got {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// The stream (a name or an ARN).
    stream: String,
    /// Every record's partition key [the MD5 of the line, so equal lines
    /// go to the same shard].
    #[arg(long, value_name = "KEY", conflicts_with = "key_field")]
    partition_key: Option<String>,
    /// Lines are JSON objects: this field's value is the partition key.
    #[arg(long, value_name = "FIELD")]
    key_field: Option<String>,
}

#[derive(Serialize)]
struct PutReport<'a> {
    stream: &'a str,
    records: u64,
}

pub fn put(connection: &Connection, args: &PutArgs) -> Result<(), Failure> {
    let producer = Producer::builder(&args.stream)
        .aws_config(connection.aws_config()?)
        .build()
        .map_err(|e| explain(e, "", Some(&args.stream)))?;
    let result = put_lines(&producer, args);
    // Flushes what is queued even when reading stopped early.
    let closed = producer.close();
    let count = result?;
    closed?;
    if connection.json {
        crate::output::json_lines([PutReport {
            stream: &args.stream,
            records: count,
        }])?;
    } else {
        println!("{count} records put to {}", args.stream);
    }
    Ok(())
}

fn put_lines(producer: &Producer, args: &PutArgs) -> Result<u64, Failure> {
    let mut count = 0;
    for (index, line) in io::stdin().lock().lines().enumerate() {
        let line = line?;
        let key = match (&args.partition_key, &args.key_field) {
            (Some(key), _) => key.clone(),
            (None, Some(field)) => key_field(&line, field).ok_or_else(|| {
                Failure::new(format!(
                    "line {}: not a JSON object with a string or number field {field:?}",
                    index + 1
                ))
            })?,
            (None, None) => format!("{:x}", Md5::digest(line.as_bytes())),
        };
        producer
            .put(line.into_bytes(), &key, None)
            .map_err(|e| Failure::new(format!("line {}: {e}", index + 1)))?;
        count += 1;
    }
    Ok(count)
}

/// A JSON object's field, as a partition key.
fn key_field(line: &str, field: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    match value.get(field)? {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}
