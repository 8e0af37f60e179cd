//! `kcheck checkpoints`: export, import, snapshot, restore, reset, and
//! copy between the kcheck, KCL and async-kinesis table layouts.

use std::io::{self, BufRead, IsTerminal};
use std::time::Duration;

use clap::{Args, Subcommand};
use kcheck::checkpoint::{
    copy, AsyncKinesisTable, Change, CheckpointTable, KclTable, ResetTo, SavedCheckpoint,
    SnapshotInfo, Snapshots,
};
use kcheck::dynamodb::DynamoDbClient;

use crate::output::{cell, epoch_millis, json_lines, Table};
use crate::{explain, show_progress, table_of, Connection, Failure, GroupArgs};

#[derive(Subcommand, Debug)]
pub enum CheckpointsCommand {
    /// Every checkpoint of the group as JSON lines (to save in a file).
    Export {
        #[command(flatten)]
        group: GroupArgs,
        /// Read another layout or store instead, as `copy --from` names it
        /// (e.g. redis://HOST[:PORT][/DB]), to compare both sides of a copy.
        #[arg(long, value_name = "FORMAT:TABLE", value_parser = parse_location, conflicts_with = "table")]
        from: Option<Location>,
        /// The stream of a single-stream KCL or an async-kinesis layout.
        #[arg(long, requires = "from")]
        stream: Option<String>,
    },
    /// Write checkpoints exported as JSON lines (stdin) into the group.
    Import {
        #[command(flatten)]
        group: GroupArgs,
        /// Also move leases of running consumers (they are fenced).
        #[arg(long)]
        force: bool,
    },
    /// Keep every checkpoint of the group under LABEL in the history table.
    Snapshot {
        #[command(flatten)]
        group: GroupArgs,
        #[command(flatten)]
        history: HistoryArgs,
        label: String,
        /// The snapshot expires after this many days [kept for ever].
        #[arg(long, value_name = "DAYS")]
        retention_days: Option<u64>,
    },
    /// The group's snapshots, oldest first.
    Snapshots {
        #[command(flatten)]
        group: GroupArgs,
        #[command(flatten)]
        history: HistoryArgs,
    },
    /// Write a snapshot's checkpoints back.
    Restore {
        #[command(flatten)]
        group: GroupArgs,
        #[command(flatten)]
        history: HistoryArgs,
        label: String,
        /// Also move leases of running consumers (they are fenced).
        #[arg(long)]
        force: bool,
    },
    /// Move the checkpoints of a stream (or of one shard).
    Reset {
        #[command(flatten)]
        group: GroupArgs,
        /// The stream whose checkpoints move.
        #[arg(long)]
        stream: String,
        /// Only this shard [every shard of the stream with a lease].
        #[arg(long, value_name = "ID")]
        shard: Option<String>,
        /// trim-horizon, latest, timestamp:MILLIS or sequence:N[/SUB]
        /// (resume after that record).
        #[arg(long, value_parser = parse_reset_to)]
        to: ResetTo,
        /// Also move leases of running consumers (they are fenced).
        #[arg(long)]
        force: bool,
    },
    /// Copy every checkpoint between tables of kcheck, the Java KCL and
    /// async-kinesis, in DynamoDB or Redis (what a layout cannot hold is
    /// left and said).
    Copy {
        /// Where from: kcheck:TABLE, kcl:TABLE or async-kinesis:TABLE in
        /// DynamoDB; redis://HOST[:PORT][/DB] (or rediss://) for kcheck's
        /// Redis layout, async-kinesis:redis://… for async-kinesis's.
        #[arg(long, value_name = "FORMAT:TABLE", value_parser = parse_location)]
        from: Location,
        /// Where to, as --from.
        #[arg(long, value_name = "FORMAT:TABLE", value_parser = parse_location)]
        to: Location,
        /// The consumer group of a kcheck table (the application of the others).
        #[arg(long, value_name = "APP")]
        name: String,
        /// The stream of a single-stream KCL or an async-kinesis table (for
        /// KCL multi-stream keys: account:stream:creationEpoch).
        #[arg(long)]
        stream: Option<String>,
        /// An async-kinesis owner, or a Redis lease's, that wrote within this
        /// many seconds is alive.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        session_timeout: u64,
        /// Also move leases of running consumers (they are fenced).
        #[arg(long)]
        force: bool,
    },
}

/// A checkpoint table and its layout.
#[derive(Debug, Clone)]
pub struct Location {
    format: Format,
    /// The DynamoDB table, or the Redis URL.
    table: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Kcheck,
    Kcl,
    AsyncKinesis,
    Redis,
    AsyncKinesisRedis,
}

fn is_redis_url(text: &str) -> bool {
    text.starts_with("redis://") || text.starts_with("rediss://")
}

fn parse_location(text: &str) -> Result<Location, String> {
    // A Redis URL has a colon of its own: it is the table, not a format.
    let redis = |format, url: &str| Location {
        format,
        table: url.to_owned(),
    };
    if is_redis_url(text) {
        return Ok(redis(Format::Redis, text));
    }
    if let Some(url) = text.strip_prefix("kcheck:").filter(|t| is_redis_url(t)) {
        return Ok(redis(Format::Redis, url));
    }
    if let Some(url) = text
        .strip_prefix("async-kinesis:")
        .filter(|t| is_redis_url(t))
    {
        return Ok(redis(Format::AsyncKinesisRedis, url));
    }
    let (format, table) = text
        .split_once(':')
        .filter(|(_, table)| !table.is_empty())
        .ok_or_else(|| format!("expected FORMAT:TABLE, got {text:?}"))?;
    let format = match format {
        "kcheck" => Format::Kcheck,
        "kcl" => Format::Kcl,
        "async-kinesis" => Format::AsyncKinesis,
        other => {
            return Err(format!(
                "the format is kcheck, kcl or async-kinesis (or a redis:// URL), not {other:?}"
            ))
        }
    };
    Ok(Location {
        format,
        table: table.to_owned(),
    })
}

impl Location {
    /// The table, opened as its layout reads and writes it, and how
    /// messages name it (a Redis URL without its password).
    fn open(
        &self,
        connection: &Connection,
        name: &str,
        stream: Option<&str>,
        session_timeout: Duration,
    ) -> Result<(Box<dyn CheckpointTable>, String), Failure> {
        if matches!(self.format, Format::Redis | Format::AsyncKinesisRedis) {
            return self.open_redis(name, stream, session_timeout);
        }
        let client = DynamoDbClient::new(&connection.aws_config()?)?;
        let table: Box<dyn CheckpointTable> = match self.format {
            Format::Kcheck => Box::new(connection.group(&GroupArgs {
                name: name.to_owned(),
                table: Some(self.table.clone()),
            })?),
            Format::Kcl => {
                let mut table = KclTable::new(client, &self.table, name);
                if let Some(stream) = stream {
                    table = table.stream(stream);
                }
                if io::stderr().is_terminal() {
                    table = table.on_progress(show_progress);
                }
                Box::new(table)
            }
            Format::AsyncKinesis => {
                let stream = stream.ok_or_else(|| {
                    Failure::new("an async-kinesis table holds one stream: name it with --stream")
                })?;
                let table =
                    AsyncKinesisTable::new(client, &self.table, name, stream, session_timeout);
                Box::new(if io::stderr().is_terminal() {
                    table.on_progress(show_progress)
                } else {
                    table
                })
            }
            Format::Redis | Format::AsyncKinesisRedis => unreachable!("opened above"),
        };
        Ok((table, self.table.clone()))
    }

    #[cfg(feature = "redis")]
    fn open_redis(
        &self,
        name: &str,
        stream: Option<&str>,
        session_timeout: Duration,
    ) -> Result<(Box<dyn CheckpointTable>, String), Failure> {
        let redis = kcheck::RedisCheckpointer::builder(name)
            .url(&self.table)
            .session_timeout(session_timeout)
            .heartbeat_frequency(session_timeout / 4)
            .build()?;
        let shown = redis.endpoint().to_owned();
        if self.format == Format::Redis {
            return Ok((Box::new(redis), shown));
        }
        let stream = stream.ok_or_else(|| {
            Failure::new("async-kinesis's Redis keys hold one stream: name it with --stream")
        })?;
        let table = kcheck::checkpoint::AsyncKinesisRedisTable::new(&redis, stream);
        Ok((Box::new(table), shown))
    }

    #[cfg(not(feature = "redis"))]
    fn open_redis(
        &self,
        _name: &str,
        _stream: Option<&str>,
        _session_timeout: Duration,
    ) -> Result<(Box<dyn CheckpointTable>, String), Failure> {
        Err(Failure::new(
            "Redis needs kcheck built with the redis feature (cargo install --path . --features cli,redis)",
        ))
    }
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The history table [the lease table's name + "-history"].
    #[arg(long, value_name = "TABLE")]
    history_table: Option<String>,
}

fn parse_reset_to(text: &str) -> Result<ResetTo, String> {
    text.parse::<ResetTo>().map_err(|e| match e {
        kcheck::Error::InvalidArgument(message) => message,
        other => other.to_string(),
    })
}

pub fn run(connection: &Connection, command: &CheckpointsCommand) -> Result<(), Failure> {
    match command {
        CheckpointsCommand::Export {
            group,
            from: Some(from),
            stream,
        } => {
            let timeout = Duration::from_secs(60);
            let (source, shown) = from.open(connection, &group.name, stream.as_deref(), timeout)?;
            let read = source
                .read()
                .map_err(|e| explain(e, &shown, stream.as_deref()))?;
            for note in read.notes {
                eprintln!("note: {note}");
            }
            Ok(json_lines(&read.checkpoints)?)
        }
        CheckpointsCommand::Export {
            group, from: None, ..
        } => {
            let table = table_of(group);
            let saved = connection
                .group(group)?
                .export()
                .map_err(|e| explain(e, &table, None))?;
            Ok(json_lines(&saved)?)
        }
        CheckpointsCommand::Import { group, force } => {
            let table = table_of(group);
            let saved = read_saved()?;
            let changes = connection
                .group(group)?
                .import(&saved, *force)
                .map_err(|e| explain(e, &table, None))?;
            print_changes(connection, &changes)
        }
        CheckpointsCommand::Snapshot {
            group,
            history,
            label,
            retention_days,
        } => {
            let (snapshots, table) = snapshots(connection, group, history)?;
            let snapshots = match retention_days {
                Some(days) => snapshots.retention(Duration::from_secs(days * 86_400)),
                None => snapshots,
            };
            let info = snapshots
                .snapshot(label)
                .map_err(|e| explain(e, &table, None))?;
            print_snapshots(connection, &[info])
        }
        CheckpointsCommand::Snapshots { group, history } => {
            let (snapshots, table) = snapshots(connection, group, history)?;
            let all = snapshots
                .snapshots()
                .map_err(|e| explain(e, &table, None))?;
            print_snapshots(connection, &all)
        }
        CheckpointsCommand::Restore {
            group,
            history,
            label,
            force,
        } => {
            let (snapshots, table) = snapshots(connection, group, history)?;
            let changes = snapshots
                .restore(label, *force)
                .map_err(|e| explain(e, &table, None))?;
            print_changes(connection, &changes)
        }
        CheckpointsCommand::Reset {
            group,
            stream,
            shard,
            to,
            force,
        } => {
            let table = table_of(group);
            let changes = connection
                .group(group)?
                .reset(stream, shard.as_deref(), to, *force)
                .map_err(|e| explain(e, &table, Some(stream)))?;
            print_changes(connection, &changes)
        }
        CheckpointsCommand::Copy {
            from,
            to,
            name,
            stream,
            session_timeout,
            force,
        } => {
            let timeout = Duration::from_secs(*session_timeout);
            let (source, from_shown) = from.open(connection, name, stream.as_deref(), timeout)?;
            let (target, to_shown) = to.open(connection, name, stream.as_deref(), timeout)?;
            let (changes, notes) = copy(source.as_ref(), target.as_ref(), *force).map_err(|e| {
                explain(e, &format!("{from_shown} or {to_shown}"), stream.as_deref())
            })?;
            for note in notes {
                eprintln!("note: {note}");
            }
            print_changes(connection, &changes)
        }
    }
}

/// The group's snapshots, and the lease table errors name (a missing
/// history table is created by a snapshot, and has no snapshots).
fn snapshots(
    connection: &Connection,
    group: &GroupArgs,
    history: &HistoryArgs,
) -> Result<(Snapshots, String), Failure> {
    let snapshots = Snapshots::new(connection.group(group)?);
    let snapshots = match &history.history_table {
        Some(table) => snapshots.table_name(table),
        None => snapshots,
    };
    Ok((snapshots, table_of(group)))
}

/// Checkpoints as JSON lines from stdin; a bad line is named.
fn read_saved() -> Result<Vec<SavedCheckpoint>, Failure> {
    let mut saved = Vec::new();
    for (index, line) in io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        saved.push(serde_json::from_str(&line).map_err(|e| {
            Failure::new(format!(
                "stdin line {}: not an exported checkpoint: {e}",
                index + 1
            ))
        })?);
    }
    Ok(saved)
}

fn print_changes(connection: &Connection, changes: &[Change]) -> Result<(), Failure> {
    if connection.json {
        return Ok(json_lines(changes)?);
    }
    let mut table = Table::new(&["STREAM", "SHARD", "BEFORE", "AFTER", "FENCED", "NOTE"]);
    for change in changes {
        table.row(vec![
            change.stream.clone(),
            change.shard.clone(),
            cell(change.before.as_ref()),
            cell(change.after.as_ref()),
            cell(change.fenced.as_deref()),
            cell(change.note.as_deref()),
        ]);
    }
    table.print()?;
    println!("{} checkpoints written", changes.len());
    Ok(())
}

fn print_snapshots(connection: &Connection, snapshots: &[SnapshotInfo]) -> Result<(), Failure> {
    if connection.json {
        return Ok(json_lines(snapshots)?);
    }
    let mut table = Table::new(&["LABEL", "CREATED_AT_MS", "CHECKPOINTS"]);
    for info in snapshots {
        table.row(vec![
            info.label.clone(),
            epoch_millis(info.created_at).to_string(),
            info.checkpoints.to_string(),
        ]);
    }
    Ok(table.print()?)
}
