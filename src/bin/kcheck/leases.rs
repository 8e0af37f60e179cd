//! `kcheck leases`: every lease of a group, optionally refreshed in place.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

use clap::Args;
use kcheck::checkpoint::{Backlog, LeaseInfo};
use serde::Serialize;

use crate::output::{cell, json_lines, Table};
use crate::{explain, table_of, Connection, Failure, GroupArgs};

#[derive(Args, Debug)]
pub struct LeasesArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// Only this stream's leases, each with whether records follow its
    /// checkpoint (read from Kinesis) and Kinesis's MillisBehindLatest
    /// there.
    #[arg(long)]
    stream: Option<String>,
    /// Refresh every SECS seconds [2] until Ctrl-C.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<u64>,
}

/// One lease as printed: the library's JSON object, with how long ago it
/// was renewed and, for one stream, its backlog.
#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    info: &'a LeaseInfo,
    renewed_secs_ago: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records_after: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    millis_behind_latest: Option<u64>,
}

pub fn run(connection: &Connection, args: &LeasesArgs) -> Result<(), Failure> {
    let group = connection.group(&args.group)?;
    let table = table_of(&args.group);
    let Some(every) = args.watch else {
        return print(connection, args, &group, &table);
    };
    let clear = std::io::stdout().is_terminal();
    loop {
        if clear {
            // Home and clear the screen, then draw the new table there.
            print!("\x1b[H\x1b[2J");
        }
        print(connection, args, &group, &table)?;
        if !clear {
            println!();
        }
        std::io::stdout().flush()?;
        std::thread::sleep(Duration::from_secs(every.max(1)));
    }
}

fn print(
    connection: &Connection,
    args: &LeasesArgs,
    group: &kcheck::checkpoint::ConsumerGroup,
    table: &str,
) -> Result<(), Failure> {
    let stream = args.stream.as_deref();
    let leases: Vec<LeaseInfo> = group
        .leases()
        .map_err(|e| explain(e, table, stream))?
        .into_iter()
        .filter(|info| stream.is_none_or(|s| info.stream == s))
        .collect();
    let backlogs: Vec<Option<Backlog>> = leases
        .iter()
        .map(|info| match stream {
            None => Ok(None),
            Some(_) => group.backlog(info).map(Some),
        })
        .collect::<kcheck::Result<_>>()
        .map_err(|e| explain(e, table, stream))?;
    if let (Some(stream), true) = (stream, leases.is_empty()) {
        eprintln!(
            "kcheck: group {} has no leases on stream {stream}",
            group.name()
        );
    }
    let now = SystemTime::now();
    let rows = leases.iter().zip(&backlogs).map(|(info, backlog)| Row {
        info,
        renewed_secs_ago: info
            .renewed_at
            .map(|at| now.duration_since(at).unwrap_or_default().as_secs()),
        records_after: backlog.map(|b| b.records_after),
        millis_behind_latest: backlog.and_then(|b| b.millis_behind_latest),
    });
    if connection.json {
        return Ok(json_lines(rows)?);
    }
    let mut header = vec![
        "STREAM",
        "SHARD",
        "OWNER",
        "STATE",
        "CHECKPOINT",
        "RENEWED",
        "HANDOFF",
        "TTL",
    ];
    if stream.is_some() {
        header.extend(["PENDING", "BEHIND_MS"]);
    }
    let mut table = Table::new(&header);
    for row in rows {
        let info = row.info;
        let state = serde_json::to_value(info.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut cells = vec![
            info.stream.clone(),
            info.lease.shard_id.clone(),
            cell(info.lease.owner.as_deref()),
            state,
            cell(info.lease.checkpoint.as_ref()),
            cell(row.renewed_secs_ago.map(|s| format!("{s}s ago"))),
            cell(info.lease.handoff_to.as_deref()),
            cell(info.lease.expires_at),
        ];
        if stream.is_some() {
            cells.push(cell(row.records_after.map(|after| {
                if after {
                    "yes"
                } else {
                    "no"
                }
            })));
            cells.push(cell(row.millis_behind_latest));
        }
        table.row(cells);
    }
    Ok(table.print()?)
}
