//! `kcheck`: look at and move a consumer group's leases and checkpoints,
//! read and write records, from the command line. Thin: it parses flags,
//! calls the library and prints (a table for people, JSON lines with
//! `--json`). Built only with the `cli` feature:
//! `cargo install --path . --features cli`.

mod checkpoints;
mod leases;
mod output;
mod records;

use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use kcheck::checkpoint::ConsumerGroup;
use kcheck::kinesis::KinesisClient;
use kcheck::{AwsConfig, DynamoDbCheckpointer, ErrorCode};

#[derive(Parser, Debug)]
#[command(
    name = "kcheck",
    version,
    about = "Kinesis consumer groups' leases and checkpoints, and records, from the command line"
)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every lease of a consumer group, with its state and checkpoint.
    Leases(leases::LeasesArgs),
    /// Print a stream's records, with or without a consumer group.
    Tail(records::TailArgs),
    /// Write stdin's lines to a stream, one record each.
    Put(records::PutArgs),
    /// Export, import, snapshot, restore and reset a group's checkpoints.
    #[command(subcommand)]
    Checkpoints(checkpoints::CheckpointsCommand),
}

/// Where and as whom requests go, and how results are printed; accepted
/// by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Send every request to this endpoint, e.g. http://localhost:4566
    /// [AWS_ENDPOINT_URL_KINESIS / _DYNAMODB, AWS_ENDPOINT_URL, AWS].
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// The AWS region [AWS_REGION, AWS_DEFAULT_REGION, the profile's].
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// A profile of ~/.aws/config and ~/.aws/credentials [AWS_PROFILE].
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// JSON lines instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A consumer group and its lease table.
#[derive(Args, Debug, Clone)]
pub struct GroupArgs {
    /// The consumer group (the checkpointer's name).
    #[arg(long, value_name = "APP")]
    pub name: String,
    /// The lease table [kinesis-checkpoints-APP].
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
}

impl Connection {
    pub fn aws_config(&self) -> Result<AwsConfig, Failure> {
        let mut builder = AwsConfig::builder();
        if let Some(region) = &self.region {
            builder = builder.region(region);
        }
        if let Some(url) = &self.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        if let Some(profile) = &self.profile {
            builder = builder.profile(profile);
        }
        Ok(builder.build()?)
    }

    pub fn kinesis(&self) -> Result<KinesisClient, Failure> {
        Ok(KinesisClient::new(&self.aws_config()?)?)
    }

    /// The group's checkpointer; the table is never created here.
    pub fn checkpointer(&self, group: &GroupArgs) -> Result<DynamoDbCheckpointer, Failure> {
        let mut builder = DynamoDbCheckpointer::builder(&group.name)
            .aws_config(self.aws_config()?)
            .create_table(false);
        if let Some(table) = &group.table {
            builder = builder.table_name(table);
        }
        Ok(builder.build()?)
    }

    /// The group, checked against the streams' shards; on a terminal,
    /// long writes show their progress on stderr.
    pub fn group(&self, group: &GroupArgs) -> Result<ConsumerGroup, Failure> {
        let group = ConsumerGroup::new(&self.checkpointer(group)?).with_kinesis(self.kinesis()?);
        if !std::io::stderr().is_terminal() {
            return Ok(group);
        }
        Ok(group.on_progress(show_progress))
    }
}

/// Shows `written/total` in place on stderr (a terminal).
pub fn show_progress(written: usize, total: usize) {
    eprint!("\r{written}/{total} checkpoints written");
    if written == total {
        eprintln!();
    }
}

/// Why a command failed: one line for stderr.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<kcheck::Error> for Failure {
    fn from(error: kcheck::Error) -> Failure {
        Failure(error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            Failure(output::BROKEN_PIPE.to_owned())
        } else {
            Failure(error.to_string())
        }
    }
}

/// Kinesis operations: a resource they do not find is the stream.
const KINESIS_OPERATIONS: [&str; 6] = [
    "ListShards",
    "DescribeStreamSummary",
    "GetShardIterator",
    "GetRecords",
    "PutRecords",
    "PutRecord",
];

/// `error`, naming the table or stream when the service did not find it.
pub fn explain(error: kcheck::Error, table: &str, stream: Option<&str>) -> Failure {
    match &error {
        kcheck::Error::Service {
            operation,
            code: ErrorCode::ResourceNotFound,
            ..
        } => {
            if KINESIS_OPERATIONS.contains(operation) {
                match stream {
                    Some(stream) => Failure(format!("stream {stream} not found ({error})")),
                    None => Failure(format!("stream not found ({error})")),
                }
            } else {
                Failure(format!("table {table} not found ({error})"))
            }
        }
        _ => Failure::from(error),
    }
}

/// The table a group's commands read, as the checkpointer names it.
pub fn table_of(group: &GroupArgs) -> String {
    group
        .table
        .clone()
        .unwrap_or_else(|| format!("kinesis-checkpoints-{}", group.name))
}

/// Set by Ctrl-C once a long-running command asked for it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C set [`interrupted`] instead of killing the process, so a
/// consumer can checkpoint and release its leases.
pub fn catch_interrupt() -> Result<(), Failure> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .map_err(|e| Failure(format!("cannot handle Ctrl-C: {e}")))
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Leases(args) => leases::run(&cli.connection, args),
        Command::Tail(args) => records::tail(&cli.connection, args),
        Command::Put(args) => records::put(&cli.connection, args),
        Command::Checkpoints(command) => checkpoints::run(&cli.connection, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is not a failure.
        Err(Failure(message)) if message == output::BROKEN_PIPE => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("kcheck: {failure}");
            ExitCode::FAILURE
        }
    }
}
