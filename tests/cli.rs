//! The `kcheck` binary against the emulators: every subcommand in both
//! output modes, its errors (bad flags, a missing table or stream, missing
//! credentials, a live group without --force: one line on stderr, never a
//! panic), and the round trip export → reset → import after which a
//! consumer resumes exactly after the exported position; with the `redis`
//! feature, copies to and from Redis, and `rediss://` to a TLS server.

#[cfg(feature = "redis")]
#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kcheck::checkpoint::{ConsumerGroup, SavedCheckpoint};
use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// The binary with test credentials and both emulators' endpoints, and
/// nothing of the machine's environment.
fn kcheck(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kcheck"));
    command
        .args(args)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_KINESIS", emulators().kinesis_url())
        .env("AWS_ENDPOINT_URL_DYNAMODB", emulators().dynamodb_url())
        .stdin(Stdio::null());
    command
}

fn output(mut command: Command, stdin: Option<&str>) -> Output {
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("kcheck runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `kcheck args` and expects success; returns stdout.
fn ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = output(kcheck(args), stdin);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kcheck {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `kcheck args` and expects failure with one clear line on stderr;
/// returns (exit code, stderr).
fn fails(command: Command, stdin: Option<&str>) -> (i32, String) {
    let out = output(command, stdin);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "unexpected success: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Service {"),
        "{stderr}"
    );
    (out.status.code().unwrap(), stderr)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn leases_in_both_modes_with_backlog_watch_and_errors() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    put_payloads(&kinesis, &stream, 0..5);
    let first = manual_consumer(&stream, "app", &table);
    let records = process(&first, 3);
    first.close().unwrap();
    let position = records.last().unwrap().position().to_string();

    // One service only: --endpoint-url serves.
    let ddb = emulators().dynamodb_url();
    let text = ok(
        &[
            "leases",
            "--name",
            "app",
            "--table",
            &table,
            "--endpoint-url",
            &ddb,
        ],
        None,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("STREAM"), "{text}");
    assert!(
        lines[1].contains(stream.name()) && lines[1].contains("free"),
        "{text}"
    );
    assert!(lines[1].contains(&position), "{text}");

    let json = json_lines(&ok(
        &["leases", "--name", "app", "--table", &table, "--json"],
        None,
    ));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["state"], "free");
    assert_eq!(json[0]["checkpoint"], position.as_str());
    assert_eq!(json[0]["owner"], Value::Null);
    assert!(json[0].get("records_after").is_none());

    // With --stream: whether records follow the checkpoint.
    let args = [
        "leases",
        "--name",
        "app",
        "--table",
        &table,
        "--stream",
        stream.name(),
    ];
    let json = json_lines(&ok(&[&args[..], &["--json"]].concat(), None));
    assert_eq!(json[0]["records_after"], true, "{json:?}");
    let text = ok(&args, None);
    assert!(text.contains("PENDING") && text.contains("yes"), "{text}");

    // --watch without a terminal: plain repeated tables until killed.
    let mut watch = kcheck(&["leases", "--name", "app", "--table", &table, "--watch", "1"]);
    let mut child = watch.stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.matches("STREAM").count() >= 2, "{text}");
    assert!(
        !text.contains('\x1b'),
        "no ANSI codes off a terminal: {text:?}"
    );

    // A missing table.
    let (code, stderr) = fails(kcheck(&["leases", "--name", "nobody"]), None);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("kcheck: table kinesis-checkpoints-nobody not found"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Bad flags: clap's usage error.
    let (code, stderr) = fails(kcheck(&["leases"]), None);
    assert_eq!(code, 2);
    assert!(stderr.contains("--name"), "{stderr}");
    let (code, stderr) = fails(
        kcheck(&["leases", "--name", "app", "--watch", "soon"]),
        None,
    );
    assert_eq!(code, 2, "{stderr}");
    // No credentials anywhere.
    let home = std::env::temp_dir().join(unique_name("kcheck-home"));
    std::fs::create_dir_all(&home).unwrap();
    let mut bare = kcheck(&["leases", "--name", "app", "--table", &table]);
    bare.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", &home);
    let (code, stderr) = fails(bare, None);
    assert_eq!(code, 1);
    assert!(stderr.contains("no credentials found"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // A profile that is not there is named.
    let mut profiled = kcheck(&["leases", "--name", "app", "--profile", "nowhere"]);
    profiled.env("HOME", &home);
    let (_, stderr) = fails(profiled, None);
    assert!(stderr.contains("\"nowhere\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn tail_prints_records_raw_text_and_json_and_resumes_with_a_group() {
    let (kinesis, stream) = create_stream(2);
    let sent = put_payloads(&kinesis, &stream, 0..6);
    let name = stream.name();
    let kinesis_url = emulators().kinesis_url();

    let json = json_lines(&ok(
        &[
            "tail",
            name,
            "--from",
            "trim-horizon",
            "--format",
            "json",
            "--idle-exit",
            "2",
            "--endpoint-url",
            &kinesis_url,
        ],
        None,
    ));
    assert_eq!(json.len(), 6, "{json:?}");
    let mut data: Vec<String> = json
        .iter()
        .map(|r| r["data"].as_str().unwrap().to_owned())
        .collect();
    data.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(data, expected);
    assert!(json
        .iter()
        .all(|r| r["encoding"] == "utf-8" && r["sub_sequence"] == 0));
    assert!(json
        .iter()
        .all(|r| r["shard"].as_str().unwrap().starts_with("shardId-")));
    assert!(json
        .iter()
        .all(|r| r["arrival"].as_u64().is_some() && r["partition_key"].is_string()));

    let raw = ok(
        &[
            "tail",
            name,
            "--from",
            "trim-horizon",
            "--format",
            "raw",
            "--limit",
            "4",
        ],
        None,
    );
    assert_eq!(raw.lines().count(), 4, "{raw}");
    assert!(
        raw.lines().all(|line| sent.contains(&line.to_owned())),
        "{raw}"
    );
    let text = ok(
        &["tail", name, "--from", "trim-horizon", "--limit", "2"],
        None,
    );
    assert!(
        text.lines()
            .all(|l| l.starts_with("shardId-") && l.contains("payload-")),
        "{text}"
    );
    // --json means --format json.
    assert_eq!(
        json_lines(&ok(
            &[
                "tail",
                name,
                "--from",
                "trim-horizon",
                "--limit",
                "1",
                "--json"
            ],
            None
        ))
        .len(),
        1
    );
    // From now on: nothing old.
    assert_eq!(ok(&["tail", name, "--idle-exit", "1"], None), "");

    // As a group: the second tail resumes after the first.
    let table = unique_name("tail");
    let group = [
        "--name",
        "tailer",
        "--table",
        &table,
        "--create-table",
        "--from",
        "trim-horizon",
    ];
    let first = json_lines(&ok(
        &[&["tail", name, "--json", "--limit", "4"][..], &group].concat(),
        None,
    ));
    let rest = json_lines(&ok(
        &[&["tail", name, "--json", "--idle-exit", "3"][..], &group].concat(),
        None,
    ));
    let mut all: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|r| r["data"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first.len(), 4);
    all.sort();
    assert_eq!(all, expected, "every record once");

    // Errors: a missing stream, a bad --from, --table without --name, a
    // group whose table is missing (not created unless asked).
    let (code, stderr) = fails(
        kcheck(&["tail", "no-such-stream", "--idle-exit", "1"]),
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("kcheck: stream no-such-stream not found"),
        "{stderr}"
    );
    let (code, stderr) = fails(kcheck(&["tail", name, "--from", "oldest"]), None);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("trim-horizon, latest or timestamp:MILLIS"),
        "{stderr}"
    );
    let (code, _) = fails(kcheck(&["tail", name, "--table", "t-1"]), None);
    assert_eq!(code, 2);
    let (code, stderr) = fails(
        kcheck(&["tail", name, "--name", "nobody", "--limit", "1"]),
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("kinesis-checkpoints-nobody does not exist"),
        "{stderr}"
    );
}

#[test]
fn put_writes_stdin_lines_and_reports_the_count() {
    let (kinesis, stream) = create_stream(1);
    let name = stream.name();
    let text = ok(
        &["put", name, "--endpoint-url", &emulators().kinesis_url()],
        Some("one\ntwo\nthree\n"),
    );
    assert_eq!(text.trim(), format!("3 records put to {name}"));
    let json = json_lines(&ok(
        &["put", name, "--partition-key", "k", "--json"],
        Some("four\n"),
    ));
    assert_eq!(json[0]["records"], 1);
    assert_eq!(json[0]["stream"], name);
    ok(
        &["put", name, "--key-field", "id"],
        Some("{\"id\": 7, \"v\": \"five\"}\n"),
    );
    let read = json_lines(&ok(
        &[
            "tail",
            name,
            "--from",
            "trim-horizon",
            "--json",
            "--limit",
            "5",
        ],
        None,
    ));
    let data: Vec<&str> = read.iter().map(|r| r["data"].as_str().unwrap()).collect();
    assert_eq!(
        data,
        [
            "one",
            "two",
            "three",
            "four",
            "{\"id\": 7, \"v\": \"five\"}"
        ]
    );
    assert_eq!(read[3]["partition_key"], "k");
    assert_eq!(read[4]["partition_key"], "7");
    let _ = kinesis;

    let (code, stderr) = fails(
        kcheck(&["put", name, "--key-field", "id"]),
        Some("not json\n"),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("line 1") && stderr.contains("\"id\""),
        "{stderr}"
    );
    let (code, stderr) = fails(kcheck(&["put", "no-such-stream"]), Some("x\n"));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("kcheck: stream no-such-stream not found"),
        "{stderr}"
    );
    let (code, _) = fails(
        kcheck(&["put", name, "--partition-key", "k", "--key-field", "id"]),
        Some(""),
    );
    assert_eq!(code, 2);
}

#[test]
fn export_reset_import_round_trip_resumes_exactly_after_the_export() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    let sent = put_payloads(&kinesis, &stream, 0..12);
    let first = manual_consumer(&stream, "trip", &table);
    assert_eq!(payloads(&process(&first, 5)), sent[..5]);
    first.close().unwrap();
    let group = ["--name", "trip", "--table", &table];

    let exported = ok(&[&["checkpoints", "export"][..], &group].concat(), None);
    let saved: Vec<SavedCheckpoint> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].group, "trip");

    // Reset to the start, as a table and as JSON.
    let reset = [
        &["checkpoints", "reset"][..],
        &group,
        &["--stream", stream.name(), "--to", "trim-horizon"],
    ]
    .concat();
    let text = ok(&reset, None);
    assert!(
        text.contains("BEFORE") && text.contains("1 checkpoints written"),
        "{text}"
    );
    let json = json_lines(&ok(&[&reset[..], &["--json"]].concat(), None));
    assert_eq!(json[0]["after"], Value::Null);
    assert_eq!(json[0]["stream"], stream.name());
    let (code, stderr) = fails(
        kcheck(
            &[
                &["checkpoints", "reset"][..],
                &group,
                &["--stream", stream.name(), "--to", "oldest"],
            ]
            .concat(),
        ),
        None,
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("trim-horizon, latest, timestamp:MILLIS or sequence:N[/SUB]"),
        "{stderr}"
    );

    // Import the export back: a consumer resumes right after it.
    let text = ok(
        &[&["checkpoints", "import"][..], &group].concat(),
        Some(&exported),
    );
    assert!(text.contains(&saved[0].sequence.clone().unwrap()), "{text}");
    let second = manual_consumer(&stream, "trip", &table);
    assert_eq!(payloads(&take(&second, 7, WAIT)), sent[5..]);
    assert!(take(&second, 1, Duration::from_millis(500)).is_empty());

    // While it runs, import is refused without --force...
    let admin = ConsumerGroup::new(&manual_checkpointer("trip", &table));
    assert!(wait_until(WAIT, || admin.leases().unwrap()[0]
        .lease
        .owner
        .is_some()));
    let import = [&["checkpoints", "import"][..], &group].concat();
    let (code, stderr) = fails(kcheck(&import), Some(&exported));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("leases are alive") && stderr.contains("force"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // ...and fences the owner with it.
    let json = json_lines(&ok(
        &[&import[..], &["--force", "--json"]].concat(),
        Some(&exported),
    ));
    assert_eq!(json[0]["fenced"], second.owner_id());
    second.close().ok();

    // Bad input is named by line; a missing table by name.
    let (code, stderr) = fails(kcheck(&import), Some("{\"group\": 1}\n"));
    assert_eq!(code, 1);
    assert!(stderr.contains("stdin line 1"), "{stderr}");
    let (code, stderr) = fails(kcheck(&["checkpoints", "export", "--name", "nobody"]), None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("table kinesis-checkpoints-nobody not found"),
        "{stderr}"
    );
}

#[test]
fn snapshots_are_taken_listed_and_restored() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    let history = unique_name("history");
    let sent = put_payloads(&kinesis, &stream, 0..8);
    let first = manual_consumer(&stream, "snap", &table);
    process(&first, 3);
    first.close().unwrap();
    let group = [
        "--name",
        "snap",
        "--table",
        &table,
        "--history-table",
        &history,
    ];

    let text = ok(
        &[
            &["checkpoints", "snapshot"][..],
            &group,
            &["before", "--retention-days", "7"],
        ]
        .concat(),
        None,
    );
    assert!(
        text.contains("before") && text.contains("CHECKPOINTS"),
        "{text}"
    );
    let (code, stderr) = fails(
        kcheck(&[&["checkpoints", "snapshot"][..], &group, &["before"]].concat()),
        None,
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("already has a snapshot"), "{stderr}");
    let json = json_lines(&ok(
        &[&["checkpoints", "snapshots"][..], &group, &["--json"]].concat(),
        None,
    ));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["label"], "before");
    assert_eq!(json[0]["checkpoints"], 1);
    let text = ok(&[&["checkpoints", "snapshots"][..], &group].concat(), None);
    assert!(text.lines().nth(1).unwrap().starts_with("before"), "{text}");

    // Move on, then restore: the next consumer reads from record 3 again.
    let second = manual_consumer(&stream, "snap", &table);
    process(&second, 5);
    second.close().unwrap();
    let json = json_lines(&ok(
        &[
            &["checkpoints", "restore"][..],
            &group,
            &["before", "--json"],
        ]
        .concat(),
        None,
    ));
    assert_eq!(json.len(), 1);
    let third = manual_consumer(&stream, "snap", &table);
    assert_eq!(payloads(&take(&third, 5, WAIT)), sent[3..]);
    third.close().unwrap();

    let (code, stderr) = fails(
        kcheck(&[&["checkpoints", "restore"][..], &group, &["never"]].concat()),
        None,
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("no snapshot \"never\""), "{stderr}");
    let (code, _) = fails(kcheck(&["checkpoints", "snapshot", "--name", "snap"]), None);
    assert_eq!(code, 2, "LABEL is required");
}

#[test]
fn copy_moves_checkpoints_through_the_kcl_and_async_kinesis_layouts() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    put_payloads(&kinesis, &stream, 0..10);
    let first = manual_consumer(&stream, "mover", &table);
    let done = process(&first, 4);
    first.close().unwrap();
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let new_table = |key: &str| {
        let name = unique_name("other");
        client
            .create_table(&kcheck::dynamodb::CreateTableRequest::new(
                &name,
                key,
                kcheck::dynamodb::ScalarAttributeType::S,
            ))
            .unwrap();
        client.wait_for_table_active(&name, WAIT).unwrap();
        name
    };
    let kcl = new_table("leaseKey");
    let async_kinesis = new_table("shard_id");
    let from_kcheck = format!("kcheck:{table}");
    let to_kcl = format!("kcl:{kcl}");
    let to_async = format!("async-kinesis:{async_kinesis}");
    let copied = ok(
        &[
            "checkpoints",
            "copy",
            "--name",
            "mover",
            "--stream",
            stream.name(),
            "--from",
            &from_kcheck,
            "--to",
            &to_kcl,
            "--json",
        ],
        None,
    );
    let rows = json_lines(&copied);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["after"],
        done.last().unwrap().position().to_string()
    );
    ok(
        &[
            "checkpoints",
            "copy",
            "--name",
            "mover",
            "--stream",
            stream.name(),
            "--from",
            &to_kcl,
            "--to",
            &to_async,
        ],
        None,
    );
    // Back into a new kcheck group, which resumes right after.
    let back = format!("kcheck:{table}");
    ok(
        &[
            "checkpoints",
            "copy",
            "--name",
            "moved",
            "--stream",
            stream.name(),
            "--from",
            &to_async,
            "--to",
            &back,
        ],
        None,
    );
    let resumed = manual_consumer(&stream, "moved", &table);
    assert_eq!(
        payloads(&take(&resumed, 6, WAIT)),
        (4..10).map(|i| format!("payload-{i}")).collect::<Vec<_>>()
    );
    resumed.close().unwrap();

    let (code, stderr) = fails(
        kcheck(&[
            "checkpoints",
            "copy",
            "--name",
            "x",
            "--from",
            "redis:t",
            "--to",
            &back,
        ]),
        None,
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("kcheck, kcl or async-kinesis"), "{stderr}");
    let (_, stderr) = fails(
        kcheck(&[
            "checkpoints",
            "copy",
            "--name",
            "x",
            "--from",
            &to_async,
            "--to",
            &back,
        ]),
        None,
    );
    assert!(stderr.contains("name it with --stream"), "{stderr}");
}

#[cfg(feature = "redis")]
#[test]
fn copy_moves_a_group_from_redis_to_dynamodb_and_back() {
    use kcheck::checkpoint::Checkpointer;
    let server = redis_server::RedisServer::start();
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    put_payloads(&kinesis, &stream, 0..10);
    let redis = kcheck::RedisCheckpointer::builder("mover")
        .url(server.url())
        .auto_checkpoint(false)
        .build()
        .unwrap();
    let first = consumer_for(&stream).checkpointer(redis).build().unwrap();
    let done = process(&first, 4);
    first.close().unwrap();
    manual_checkpointer("mover", &table).prepare().unwrap();
    let to_dynamodb = format!("kcheck:{table}");
    let copy = |from: &str, to: &str| {
        ok(
            &[
                "checkpoints",
                "copy",
                "--name",
                "mover",
                "--stream",
                stream.name(),
                "--from",
                from,
                "--to",
                to,
                "--json",
            ],
            None,
        )
    };
    let rows = json_lines(&copy(&server.url(), &to_dynamodb));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0]["after"],
        done.last().unwrap().position().to_string()
    );
    // Both sides export the same lines.
    let redis_side = ok(
        &[
            "checkpoints",
            "export",
            "--name",
            "mover",
            "--from",
            &server.url(),
        ],
        None,
    );
    let dynamodb_side = ok(
        &[
            "checkpoints",
            "export",
            "--name",
            "mover",
            "--table",
            &table,
        ],
        None,
    );
    assert_eq!(json_lines(&redis_side).len(), 1);
    assert_eq!(redis_side, dynamodb_side);
    let resumed = manual_consumer(&stream, "mover", &table);
    let more = process(&resumed, 3);
    assert_eq!(
        payloads(&more),
        (4..7).map(|i| format!("payload-{i}")).collect::<Vec<_>>()
    );
    resumed.close().unwrap();

    // Back into Redis, in kcheck's layout and in async-kinesis's.
    let rows = json_lines(&copy(&to_dynamodb, &format!("kcheck:{}", server.url())));
    assert_eq!(
        rows[0]["before"],
        done.last().unwrap().position().to_string()
    );
    assert_eq!(
        rows[0]["after"],
        more.last().unwrap().position().to_string()
    );
    let async_kinesis = format!("async-kinesis:{}", server.url());
    copy(&to_dynamodb, &async_kinesis);
    let exported = json_lines(&copy(&async_kinesis, &server.url()));
    assert_eq!(
        exported[0]["after"],
        more.last().unwrap().position().to_string()
    );

    // A password never shows, even in an error.
    let secret = format!("redis://:s3cr3t-pw@127.0.0.1:{}/0", server.port());
    let (_, stderr) = fails(
        kcheck(&[
            "checkpoints",
            "copy",
            "--name",
            "mover",
            "--from",
            &secret,
            "--to",
            &to_dynamodb,
        ]),
        None,
    );
    assert!(!stderr.contains("s3cr3t-pw"), "{stderr}");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
}

/// A throwaway CA and a certificate it signed for 127.0.0.1, in `dir`:
/// (CA, certificate, key).
#[cfg(feature = "redis")]
fn tls_files(dir: &std::path::Path) -> [String; 3] {
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    std::fs::write(
        file("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    let (ca, ca_key) = (file("ca.pem"), file("ca.key"));
    let (cert, key, csr) = (file("server.pem"), file("server.key"), file("server.csr"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kcheck test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &file("san.ext"),
        "-out",
        &cert,
    ]);
    [ca, cert, key]
}

#[cfg(feature = "redis")]
#[test]
fn rediss_reaches_a_tls_server_whose_ca_is_trusted_and_only_then() {
    use kcheck::checkpoint::CheckpointTable;
    let dir = std::env::temp_dir().join(unique_name("kcheck-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let [ca, cert, key] = tls_files(&dir);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    // The plain port stays for the test's own writes; kcheck goes through TLS.
    let server = redis_server::RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let plain = kcheck::RedisCheckpointer::builder("secure")
        .url(server.url())
        .build()
        .unwrap();
    let saved = SavedCheckpoint {
        group: "secure".into(),
        stream: "orders".into(),
        shard: "shardId-000000000000".into(),
        sequence: Some("4959".into()),
        sub_sequence: 2,
        parents: Vec::new(),
        start: None,
    };
    plain.write(std::slice::from_ref(&saved), false).unwrap();
    let url = format!("rediss://127.0.0.1:{tls_port}/0");
    let args = [
        "checkpoints",
        "export",
        "--name",
        "secure",
        "--from",
        url.as_str(),
    ];
    let mut trusted = kcheck(&args);
    trusted.env("SSL_CERT_FILE", &ca);
    let out = output(trusted, None);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(lines, vec![serde_json::to_value(&saved).unwrap()]);
    // Without the CA the certificate is refused.
    let (_, stderr) = fails(kcheck(&args), None);
    assert!(
        stderr.contains(&tls_port) && stderr.contains("certificate"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
