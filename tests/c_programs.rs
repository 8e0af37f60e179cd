//! The C API from real C programs: `tests/c/*.c` (and one C++ file; not
//! `installed.c`, which tests/install.rs builds against an install) are
//! compiled with strict warnings against `include/kcheck.h`, linked to the
//! `libkcheck.so` this cargo run built (through its SONAME,
//! `libkcheck.so.1`), and run against this binary's emulators: the API
//! contract offline, two `consume` processes sharing a consumer group and a
//! third resuming from their checkpoints, close waking a blocked next, a
//! consumer freed by its reader while another thread closes it, a host that
//! forks while holding leases, and the same programs once more under
//! AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use kcheck::checkpoint::{Checkpointer, LeaseScope};
use kcheck::kinesis::StreamRef;
use support::*;

/// The ABI major version the programs must be linked against.
const SONAME: &str = "libkcheck.so.1";
const STRICT_C: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
const STRICT_CXX: &[&str] = &["-std=c++11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
const SANITIZE: &[&str] = &[
    "-g",
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
];
/// The slow (DWARF) unwinder for allocation stacks: the Rust library has no
/// frame pointers, so the fast one loses every frame between malloc and
/// the C caller, and a leak report would not name the kcheck function.
const ASAN_OPTIONS: &str = "detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0";
const UBSAN_OPTIONS: &str = "halt_on_error=1:print_stacktrace=1";
/// How a consumer group's DynamoDB checkpointer is named by `consume`.
const GROUP: &str = "c-group";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Flavour {
    Plain,
    Sanitized,
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c")
}

/// This process's scratch directory under target/tmp: `lib/` with the
/// library links, and the compiled programs. Directories that earlier runs
/// left behind are removed once they are an hour old.
fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = root.join(format!("c-programs-{}", std::process::id()));
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
                if old
                    && entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("c-programs-")
                {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lib")).expect("create the scratch directory");
        dir
    })
}

/// A directory holding `libkcheck.so.1` and `libkcheck.so`, both links to the
/// built library: `-L` finds it by the dev name, the loader by its SONAME.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let library = built_library();
        let soname = readelf_dynamic(&library)
            .lines()
            .find(|l| l.contains("(SONAME)"))
            .map(str::to_owned)
            .unwrap_or_default();
        assert!(
            soname.contains(&format!("[{SONAME}]")),
            "{} has SONAME line {soname:?}, expected {SONAME}",
            library.display()
        );
        let dir = work_dir().join("lib");
        for name in [SONAME, "libkcheck.so"] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&library, &link)
                .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        }
        dir
    })
}

/// Compiles `tests/c/<source>` once per flavour and returns the executable.
/// C files use `cc` with the strict C11 flags, `.cpp` files `c++` with
/// C++11; both link with -pthread.
fn program(source: &str, flavour: Flavour) -> PathBuf {
    static BUILT: Mutex<BTreeMap<(String, Flavour), PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let key = (source.to_owned(), flavour);
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let lib = lib_dir();
    let stem = source.rsplit_once('.').map_or(source, |(stem, _)| stem);
    let output_path = work_dir().join(match flavour {
        Flavour::Plain => stem.to_owned(),
        Flavour::Sanitized => format!("{stem}-sanitized"),
    });
    let (compiler, standard) = if source.ends_with(".cpp") {
        ("c++", STRICT_CXX)
    } else {
        ("cc", STRICT_C)
    };
    let mut command = Command::new(compiler);
    command.args(standard).arg("-pthread");
    if flavour == Flavour::Sanitized {
        command.args(SANITIZE);
    }
    command
        .arg("-I")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"))
        .arg(source_dir().join(source))
        .arg("-o")
        .arg(&output_path)
        .arg(format!("-L{}", lib.display()))
        .arg("-lkcheck")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{compiler} not runnable: {e}"));
    assert!(
        output.status.success(),
        "{compiler} could not compile tests/c/{source} ({flavour:?}): {command:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dynamic = readelf_dynamic(&output_path);
    assert!(
        dynamic.contains(&format!("Shared library: [{SONAME}]")),
        "{} does not NEED {SONAME}:\n{dynamic}",
        output_path.display()
    );
    built.insert(key, output_path.clone());
    output_path
}

/// A program running with its output collected on two threads.
/// Dropping it (a test that panics) kills the program.
struct Running {
    name: String,
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished program did.
struct Finished {
    name: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Finished {
    /// Panics unless the program exited 0.
    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "{} failed ({}) after {:?}; stderr:\n{}",
            self.name,
            self.status,
            self.took,
            self.stderr
        );
    }

    /// Panics if a sanitizer reported anything, even if the exit status is 0.
    fn assert_no_sanitizer_report(&self) {
        let reports: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| {
                l.contains("Sanitizer") || l.contains("runtime error:") || l.contains("SUMMARY:")
            })
            .collect();
        assert!(
            reports.is_empty(),
            "{} under sanitizers reported {reports:?}; stderr:\n{}",
            self.name,
            self.stderr
        );
    }
}

/// Starts `program` with a clean environment: test credentials only (and
/// the sanitizer options for sanitized builds), so nothing on the machine
/// (profiles, IMDS, other AWS_* settings) affects it.
fn spawn(program: &Path, args: &[&str], flavour: Flavour) -> Running {
    let name = program
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if flavour == Flavour::Sanitized {
        command
            .env("ASAN_OPTIONS", ASAN_OPTIONS)
            .env("UBSAN_OPTIONS", UBSAN_OPTIONS);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
    let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
    Running {
        name,
        child,
        started: Instant::now(),
        stdout: Some(stdout),
        stderr: Some(stderr),
    }
}

fn joined(reader: &mut Option<JoinHandle<String>>) -> String {
    reader
        .take()
        .map(|r| r.join().expect("output reader"))
        .unwrap_or_default()
}

impl Running {
    /// Waits for the program to exit; kills it and panics, with its stderr,
    /// once `limit` has passed since it started.
    fn wait(mut self, limit: Duration) -> Finished {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if self.started.elapsed() > limit {
                let stderr = self.kill();
                panic!(
                    "{} still running after {limit:?}: killed; stderr:\n{stderr}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Finished {
            name: self.name.clone(),
            status,
            took: self.started.elapsed(),
            stdout: joined(&mut self.stdout),
            stderr: joined(&mut self.stderr),
        }
    }

    /// Kills the program (when a test gives up on it); returns its stderr.
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        joined(&mut self.stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Already reaped after wait(): then kill() sends no signal.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &Path, args: &[&str], flavour: Flavour, limit: Duration) -> Finished {
    spawn(program, args, flavour).wait(limit)
}

/// One line of `consume`'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    shard: String,
    sequence: String,
    sub_sequence: u64,
    data: String,
}

impl Line {
    /// Kinesis sequence numbers are decimal strings too long for u128:
    /// compare them by length, then digits.
    fn position(&self) -> (usize, &str, u64) {
        (self.sequence.len(), &self.sequence, self.sub_sequence)
    }
}

fn parse_lines(finished: &Finished) -> Vec<Line> {
    finished
        .stdout
        .lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut field = || {
                parts
                    .next()
                    .unwrap_or_else(|| panic!("{}: malformed output line {line:?}", finished.name))
            };
            let shard = field().to_owned();
            let sequence = field().to_owned();
            let sub_sequence = field()
                .parse()
                .unwrap_or_else(|_| panic!("{}: bad sub-sequence in {line:?}", finished.name));
            let data = field().to_owned();
            Line {
                shard,
                sequence,
                sub_sequence,
                data,
            }
        })
        .collect()
}

fn consume_args<'a>(
    stream: &'a StreamRef,
    table: &'a str,
    idle_ms: &'a str,
    urls: &'a (String, String),
) -> [&'a str; 6] {
    [&urls.0, &urls.1, stream.as_str(), GROUP, table, idle_ms]
}

fn urls() -> (String, String) {
    (emulators().kinesis_url(), emulators().dynamodb_url())
}

/// How many leases each owner holds, sorted; empty while the table or the
/// leases do not exist yet.
fn lease_split(checkpointer: &dyn Checkpointer, scope: &LeaseScope) -> Vec<usize> {
    let Ok(leases) = checkpointer.leases(scope) else {
        return Vec::new();
    };
    let mut per_owner: HashMap<String, usize> = HashMap::new();
    for lease in leases {
        if let Some(owner) = lease.owner {
            *per_owner.entry(owner).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = per_owner.into_values().collect();
    counts.sort_unstable();
    counts
}

#[test]
fn api_misuse_and_cpp_programs_pass() {
    let started = Instant::now();
    let misuse = run(
        &program("api_misuse.c", Flavour::Plain),
        &[],
        Flavour::Plain,
        Duration::from_secs(60),
    );
    misuse.assert_success();
    assert!(
        misuse.stderr.contains("all checks passed"),
        "api_misuse did not finish its checks; stderr:\n{}",
        misuse.stderr
    );
    let cpp = run(
        &program("cpp_smoke.cpp", Flavour::Plain),
        &[],
        Flavour::Plain,
        Duration::from_secs(30),
    );
    cpp.assert_success();
    eprintln!(
        "api_misuse took {:?}, cpp_smoke {:?}, {:?} in all",
        misuse.took,
        cpp.took,
        started.elapsed()
    );
}

#[test]
fn close_from_main_thread_wakes_a_thread_blocked_in_next() {
    let (_kinesis, stream) = create_stream(1);
    let finished = run(
        &program("close_wakes_next.c", Flavour::Plain),
        &[&emulators().kinesis_url(), stream.as_str()],
        Flavour::Plain,
        Duration::from_secs(30),
    );
    finished.assert_success();
    eprintln!("{}", finished.stderr.trim_end());
}

/// The README's loop in a worker thread frees the consumer on CLOSED while
/// the main thread's close is still running: under AddressSanitizer, round
/// after round, the close in flight keeps the consumer alive.
#[test]
fn a_reader_may_free_the_consumer_while_another_thread_closes_it() {
    let (_kinesis, stream) = create_stream(1);
    let finished = run(
        &program("close_then_free.c", Flavour::Sanitized),
        &[&emulators().kinesis_url(), stream.as_str(), "100"],
        Flavour::Sanitized,
        Duration::from_secs(120),
    );
    finished.assert_success();
    finished.assert_no_sanitizer_report();
    eprintln!("{} in {:?}", finished.stderr.trim_end(), finished.took);
}

/// A C producer puts from two threads, flushes and closes under
/// AddressSanitizer; kcheck's consumer reads every record back.
#[test]
fn a_c_producer_writes_what_the_consumer_reads() {
    let (_kinesis, stream) = create_stream(2);
    let finished = run(
        &program("produce.c", Flavour::Sanitized),
        &[&emulators().kinesis_url(), stream.as_str(), "200"],
        Flavour::Sanitized,
        Duration::from_secs(120),
    );
    finished.assert_success();
    finished.assert_no_sanitizer_report();
    assert!(
        finished.stderr.contains("produced 200 records"),
        "{}",
        finished.stderr
    );
    let consumer = consumer_for(&stream).build().unwrap();
    let mut read = payloads(&take(&consumer, 200, Duration::from_secs(30)));
    consumer.close().unwrap();
    read.sort();
    let mut expected: Vec<String> = (0..200).map(|n| format!("produced-{n}")).collect();
    expected.sort();
    assert_eq!(read, expected);
}

/// A C host forks while its consumer holds leases: the child that only
/// frees its copies and the child that uses them (FORKED) leave the
/// parent's leases, reads and checkpoints alone; plain and sanitized.
#[test]
fn a_forked_child_leaves_the_parents_consumer_alone() {
    let urls = urls();
    for flavour in [Flavour::Plain, Flavour::Sanitized] {
        let (kinesis, stream) = create_stream(2);
        put_payloads(&kinesis, &stream, 0..200);
        let table = unique_name("c-fork");
        let finished = run(
            &program("fork_child.c", flavour),
            &[&urls.0, &urls.1, stream.as_str(), GROUP, &table],
            flavour,
            Duration::from_secs(90),
        );
        finished.assert_success();
        if flavour == Flavour::Sanitized {
            finished.assert_no_sanitizer_report();
        }
        assert!(
            !finished.stderr.contains("panicked"),
            "{flavour:?}: a process panicked; stderr:\n{}",
            finished.stderr
        );
        eprintln!(
            "{flavour:?}: {} in {:?}",
            finished.stderr.trim_end(),
            finished.took
        );
    }
}

/// How the two `consume` processes of a group start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Together: they race for the four leases.
    Together,
    /// The second once the first holds all four leases: it gets its share
    /// by hand-over.
    Staggered,
}

/// Waits until the group's owners hold `wanted` leases each (sorted);
/// kills `running` and panics with their stderr after 30 s.
fn wait_for_split(
    checkpointer: &dyn Checkpointer,
    scope: &LeaseScope,
    wanted: &[usize],
    running: Vec<Running>,
) -> Vec<Running> {
    if wait_until(Duration::from_secs(30), || {
        lease_split(checkpointer, scope) == wanted
    }) {
        return running;
    }
    let seen = lease_split(checkpointer, scope);
    let stderr: Vec<String> = running
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| format!("stderr of process {i}:\n{}", r.kill()))
        .collect();
    panic!(
        "the consume processes did not reach the lease split {wanted:?} within 30 s \
         (owners hold {seen:?});\n{}",
        stderr.join("\n")
    );
}

/// Two `consume` processes of one group read a 4-shard stream: every record
/// is printed, each shard is read by one process at a time, both processes
/// get records. Then a third process resumes from the checkpoints they wrote
/// at close and prints only newer records.
fn two_processes_then_a_resumed_one(start: Start) {
    let started = Instant::now();
    let consume = program("consume.c", Flavour::Plain);
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("c-leases");
    let urls = urls();
    // Long enough to span the lease split below: a process that has read
    // everything there is waits for the second half of the records.
    let idle_ms = "8000";
    let checkpointer = dynamodb_checkpointer(GROUP, &table).build().unwrap();
    let scope = LeaseScope {
        group: GROUP.to_owned(),
        stream: stream.name().to_owned(),
    };

    // Half the records before the processes start, half once they hold two
    // shards each, so both must read some whoever got the leases first.
    let first_half = put_payloads(&kinesis, &stream, 0..1000);
    let args = consume_args(&stream, &table, idle_ms, &urls);
    let a = spawn(&consume, &args, Flavour::Plain);
    let running = match start {
        Start::Together => vec![a, spawn(&consume, &args, Flavour::Plain)],
        Start::Staggered => {
            let mut running = wait_for_split(&checkpointer, &scope, &[4], vec![a]);
            running.push(spawn(&consume, &args, Flavour::Plain));
            running
        }
    };
    let running = wait_for_split(&checkpointer, &scope, &[2, 2], running);
    let split_after = started.elapsed();
    let second_half = put_payloads(&kinesis, &stream, 1000..2000);

    let finished: Vec<Finished> = running
        .into_iter()
        .map(|r| r.wait(Duration::from_secs(90)))
        .collect();
    for f in &finished {
        f.assert_success();
        for expected in ["kcheck INFO", "consume: stats {"] {
            assert!(
                f.stderr.contains(expected),
                "{} wrote no {expected:?} to stderr (log callback / stats):\n{}",
                f.name,
                f.stderr
            );
        }
    }
    let lines: Vec<Vec<Line>> = finished.iter().map(parse_lines).collect();

    // Nothing missing: every payload was printed by one process or the other.
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (process, lines) in lines.iter().enumerate() {
        for line in lines {
            readers.entry(&line.data).or_default().push(process);
        }
    }
    let expected: HashSet<&str> = first_half
        .iter()
        .chain(&second_half)
        .map(String::as_str)
        .collect();
    let mut missing: Vec<&&str> = expected
        .iter()
        .filter(|p| !readers.contains_key(**p))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} of {} records were printed by neither process, e.g. {:?}",
        missing.len(),
        expected.len(),
        missing.first()
    );
    let strangers: Vec<&&str> = readers.keys().filter(|p| !expected.contains(**p)).collect();
    assert!(strangers.is_empty(), "unexpected records: {strangers:?}");

    // Both processes read records of the second half: they held two shards
    // each when it was written.
    let second: HashSet<&str> = second_half.iter().map(String::as_str).collect();
    for (process, lines) in lines.iter().enumerate() {
        let count = lines
            .iter()
            .filter(|l| second.contains(l.data.as_str()))
            .count();
        assert!(
            count > 0,
            "process {process} printed none of the records written after the 2/2 split \
             ({} lines in all; split after {split_after:?}, idle timeout {idle_ms} ms)",
            lines.len()
        );
    }

    // One reader per shard at a time, and no record twice. Per shard, order
    // the records by position and label each with the process that printed
    // it: a lease that moves (the hand-overs that give the second process
    // its share; the newcomer may ask for one too many, which then goes
    // back) starts a new run of labels. A hand-over waits until the caller
    // has processed what it was given, and both programs keep reading, so
    // no record may come twice; a shard read by both processes at once
    // would show up as many runs and duplicates.
    let mut per_shard: BTreeMap<&str, Vec<(&Line, usize)>> = BTreeMap::new();
    for (process, lines) in lines.iter().enumerate() {
        for line in lines {
            per_shard
                .entry(&line.shard)
                .or_default()
                .push((line, process));
        }
    }
    let mut duplicates = Vec::new();
    let mut moves = BTreeMap::new();
    for (shard, records) in &mut per_shard {
        records.sort_by(|x, y| x.0.position().cmp(&y.0.position()).then(x.1.cmp(&y.1)));
        for pair in records.windows(2) {
            if pair[0].0 == pair[1].0 {
                duplicates.push(((*shard).to_owned(), pair[1].0.data.clone()));
            }
        }
        let mut runs = 0;
        let mut last_reader = None;
        for (_, process) in records.iter() {
            if last_reader != Some(*process) {
                runs += 1;
                last_reader = Some(*process);
            }
        }
        moves.insert(*shard, runs - 1);
    }
    assert!(
        duplicates.is_empty(),
        "{} records were printed twice (hand-overs promise none); lease moves per shard \
         {moves:?}: {duplicates:?}",
        duplicates.len()
    );
    assert!(
        moves.values().all(|m| *m <= 3),
        "shards were read by both processes at once: lease moves per shard {moves:?}"
    );
    eprintln!(
        "{start:?}: split 2/2 after {split_after:?}; printed {:?} records in {:?}; \
         lease moves per shard {moves:?}",
        lines.iter().map(Vec::len).collect::<Vec<_>>(),
        finished.iter().map(|f| f.took).collect::<Vec<_>>(),
    );

    // A third process resumes from the checkpoints written at close: only
    // the new records, each once.
    let third_batch = put_payloads(&kinesis, &stream, 2000..2300);
    let third = run(
        &consume,
        &consume_args(&stream, &table, "3000", &urls),
        Flavour::Plain,
        Duration::from_secs(60),
    );
    third.assert_success();
    let mut printed: Vec<String> = parse_lines(&third).into_iter().map(|l| l.data).collect();
    let old: Vec<&String> = printed
        .iter()
        .filter(|p| readers.contains_key(p.as_str()))
        .collect();
    // Both processes closed cleanly, and close checkpoints every record
    // returned (the last next call, which returned IDLE_TIMEOUT, acknowledged
    // the records before it): not one old record may come again.
    assert!(
        old.is_empty(),
        "the resumed process re-delivered {} records checkpointed at close, e.g. {:?}",
        old.len(),
        old.first()
    );
    printed.sort();
    let mut wanted = third_batch;
    wanted.sort();
    assert!(
        printed == wanted,
        "the resumed process printed {} records for the {} new ones (duplicates or gaps)",
        printed.len(),
        wanted.len()
    );
    eprintln!(
        "{start:?}: resumed with {} new records in {:?}; test took {:?}",
        printed.len(),
        third.took,
        started.elapsed()
    );
}

#[test]
fn two_consume_processes_started_together_share_a_group_and_a_third_resumes() {
    two_processes_then_a_resumed_one(Start::Together);
}

#[test]
fn a_second_consume_process_gets_its_share_by_hand_over_and_a_third_resumes() {
    two_processes_then_a_resumed_one(Start::Staggered);
}

#[test]
fn c_programs_run_clean_under_address_and_undefined_sanitizers() {
    let started = Instant::now();
    let misuse = run(
        &program("api_misuse.c", Flavour::Sanitized),
        &[],
        Flavour::Sanitized,
        Duration::from_secs(120),
    );
    misuse.assert_success();
    misuse.assert_no_sanitizer_report();
    let cpp = run(
        &program("cpp_smoke.cpp", Flavour::Sanitized),
        &[],
        Flavour::Sanitized,
        Duration::from_secs(60),
    );
    cpp.assert_success();
    cpp.assert_no_sanitizer_report();

    let (_kinesis, empty) = create_stream(1);
    let close = run(
        &program("close_wakes_next.c", Flavour::Sanitized),
        &[&emulators().kinesis_url(), empty.as_str()],
        Flavour::Sanitized,
        Duration::from_secs(60),
    );
    close.assert_success();
    close.assert_no_sanitizer_report();

    let (kinesis, stream) = create_stream(2);
    let expected = put_payloads(&kinesis, &stream, 0..500);
    let table = unique_name("c-asan");
    let urls = urls();
    let consume = run(
        &program("consume.c", Flavour::Sanitized),
        &consume_args(&stream, &table, "3000", &urls),
        Flavour::Sanitized,
        Duration::from_secs(120),
    );
    consume.assert_success();
    consume.assert_no_sanitizer_report();
    let printed: HashSet<String> = parse_lines(&consume).into_iter().map(|l| l.data).collect();
    let missing: Vec<&String> = expected.iter().filter(|p| !printed.contains(*p)).collect();
    assert!(
        missing.is_empty(),
        "consume under sanitizers missed {} of {} records",
        missing.len(),
        expected.len()
    );
    eprintln!(
        "sanitized: api_misuse {:?}, cpp_smoke {:?}, close_wakes_next {:?}, consume {:?}; \
         {:?} in all",
        misuse.took,
        cpp.took,
        close.took,
        consume.took,
        started.elapsed()
    );
}

/// The sanitized build is not vacuous: it reports a leaked kcheck handle and
/// a handle freed twice, both allocated by the Rust library.
#[test]
fn sanitizers_catch_a_leaked_and_a_doubly_freed_kcheck_handle() {
    let canary = program("sanitizer_canary.c", Flavour::Sanitized);
    let leak = run(
        &canary,
        &["leak"],
        Flavour::Sanitized,
        Duration::from_secs(60),
    );
    assert!(
        !leak.status.success()
            && leak.stderr.contains("ERROR: LeakSanitizer")
            && leak.stderr.contains("kcheck_consumer_builder_new"),
        "LeakSanitizer did not report the leaked builders ({}); stderr:\n{}",
        leak.status,
        leak.stderr
    );
    let double_free = run(
        &canary,
        &["double-free"],
        Flavour::Sanitized,
        Duration::from_secs(60),
    );
    assert!(
        !double_free.status.success()
            && double_free.stderr.contains("double-free")
            && double_free.stderr.contains("kcheck_consumer_builder_free"),
        "AddressSanitizer did not report the double free ({}); stderr:\n{}",
        double_free.status,
        double_free.stderr
    );
}
