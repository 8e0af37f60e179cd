//! What the benchmarks share: the emulators in a child process (this binary
//! re-executed, so the figures are the client's alone) and readings of this
//! process's CPU, memory, threads and file descriptors from /proc.
#![allow(dead_code)] // each benchmark uses a different part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SERVE_ENV: &str = "KCHECK_BENCH_SERVE_EMULATORS";
/// The Kinesis emulator's limit of open shards, when not its default.
const SHARD_LIMIT_ENV: &str = "KCHECK_BENCH_SHARD_LIMIT";

/// In the emulators' child process: serves them until stdin closes and
/// returns true (the benchmark's main then returns).
pub fn serve_emulators_if_asked() -> bool {
    if std::env::var_os(SERVE_ENV).is_none() {
        return false;
    }
    let mut options = kcheck_emulators::Options::default();
    if let Some(limit) = std::env::var(SHARD_LIMIT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.shard_limit = limit;
    }
    kcheck_emulators::serve_until_stdin_closes(options);
    true
}

/// User + system CPU time of this process, from /proc/self/stat.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Starts a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the emulators in a child process; returns it with the Kinesis and
/// DynamoDB URLs. They stop when the child's stdin closes.
pub fn start_emulators() -> (Child, String, String) {
    start_emulators_with_shard_limit(kcheck_emulators::Options::default().shard_limit)
}

/// [`start_emulators`], with room for `shard_limit` open shards.
pub fn start_emulators_with_shard_limit(shard_limit: u32) -> (Child, String, String) {
    let mut child = Command::new(std::env::current_exe().expect("bench path"))
        .env(SERVE_ENV, "1")
        .env(SHARD_LIMIT_ENV, shard_limit.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the emulators");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("emulator endpoints");
    let endpoints: serde_json::Value = serde_json::from_str(&line).expect("endpoint JSON");
    (
        child,
        endpoints["kinesis"].as_str().expect("kinesis").to_owned(),
        endpoints["dynamodb"].as_str().expect("dynamodb").to_owned(),
    )
}

/// A config for an emulator at `url`, with fixed credentials.
pub fn emulator_config(url: &str) -> kcheck::AwsConfig {
    kcheck::AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(url)
        .credentials(kcheck::Credentials::new("bench", "bench", None, None))
        .build()
        .expect("config")
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Entries of a /proc/self directory: threads (`task`) or open files (`fd`).
pub fn count_entries(directory: &str) -> usize {
    std::fs::read_dir(format!("/proc/self/{directory}")).map_or(0, Iterator::count)
}
