//! A fault-injecting loopback proxy in front of an emulator: it forwards
//! HTTP/1.1 requests to the upstream and applies [`Rule`]s chosen by
//! operation (the `X-Amz-Target` suffix), shard, predicate and count. It
//! records every request so tests can assert on what reached it.
//!
//! Shards are read from the request: Kinesis `ShardId`, or for `GetRecords`
//! the shard whose `GetShardIterator`/`NextShardIterator` answer handed out
//! the iterator; DynamoDB the `shard_id` key attribute of `Key` or `Item`
//! (`{group}:{stream}:{shard}`, the part after the last ':').
//!
//! One thread per client connection (keep-alive is honoured), one upstream
//! connection per request. Every hold is bounded and dropping the proxy
//! closes every connection and joins every thread.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the proxy waits for the upstream's answer: longer than any
/// emulator call, short enough that a broken upstream cannot hang a test.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle keep-alive connection is closed after this long.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a matching rule does to a request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Holds the request this long without answering, then closes the connection.
    Hang(Duration),
    /// Holds the request without answering until then (an outage's end),
    /// then closes the connection.
    HangUntil(Instant),
    /// Waits this long, then forwards normally.
    Delay(Duration),
    /// Closes the connection without forwarding: the write never happened.
    /// (A FIN, not an RST: std cannot set SO_LINGER; the client sees the
    /// connection end before any response, the same failure class.)
    CloseBeforeForwarding,
    /// Forwards, then closes without answering: the write was applied but
    /// the client never hears of it.
    ForwardThenClose,
    /// Answers this status and body without forwarding.
    Respond { status: u16, body: String },
    /// Forwards, then sends the upstream's head and only half its body.
    TruncateBody,
    /// Forwards, then sends the body `chunk` bytes at a time, `pause` apart.
    Trickle { chunk: usize, pause: Duration },
}

impl Fault {
    /// An answer with an AWS JSON error body of type `error_type`.
    pub fn error(status: u16, error_type: &str) -> Fault {
        Fault::Respond {
            status,
            body: format!(r#"{{"__type":"{error_type}","message":"injected by the fault proxy"}}"#),
        }
    }

    /// HTTP 500 InternalFailure.
    pub fn internal_error() -> Fault {
        Fault::error(500, "InternalFailure")
    }

    /// HTTP 503 ServiceUnavailable.
    pub fn unavailable() -> Fault {
        Fault::error(503, "ServiceUnavailable")
    }

    /// Kinesis read throttling.
    pub fn kinesis_throughput_exceeded() -> Fault {
        Fault::error(400, "ProvisionedThroughputExceededException")
    }

    /// DynamoDB provisioned-capacity throttling.
    pub fn dynamodb_throughput_exceeded() -> Fault {
        Fault::error(
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        )
    }

    /// DynamoDB control-plane / on-demand throttling.
    pub fn dynamodb_throttling() -> Fault {
        Fault::error(400, "com.amazonaws.dynamodb.v20120810#ThrottlingException")
    }
}

impl fmt::Display for Fault {
    /// Like `Debug`, with an injected answer shortened to its status and type.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Respond { status, body } => {
                let answer: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
                let kind = answer["__type"].as_str().unwrap_or("");
                write!(
                    f,
                    "Respond {status} {}",
                    kind.rsplit('#').next().unwrap_or(kind)
                )
            }
            other => write!(f, "{other:?}"),
        }
    }
}

/// What rules and predicates see of a request.
#[derive(Debug, Clone)]
pub struct ProxiedRequest {
    /// The `X-Amz-Target` suffix, e.g. `UpdateItem`; empty without one.
    pub operation: String,
    /// The shard the request is about, when it names one.
    pub shard: Option<String>,
    /// The JSON body.
    pub body: serde_json::Value,
}

type Predicate = dyn Fn(&ProxiedRequest) -> bool + Send + Sync;

/// When a fault applies. Rules are tried in the order they were added; the
/// first that applies decides.
pub struct Rule {
    operation: Option<String>,
    shard: Option<String>,
    predicate: Option<Box<Predicate>>,
    limit: Option<u32>,
    fault: Fault,
}

impl Rule {
    /// `fault` for every request of `operation` (e.g. `"GetRecords"`).
    pub fn on(operation: &str, fault: Fault) -> Rule {
        Rule {
            operation: Some(operation.to_owned()),
            ..Rule::on_every_operation(fault)
        }
    }

    /// `fault` for every request, whatever its operation.
    pub fn on_every_operation(fault: Fault) -> Rule {
        Rule {
            operation: None,
            shard: None,
            predicate: None,
            limit: None,
            fault,
        }
    }

    /// Only requests about `shard` (e.g. `shardId-000000000001`).
    pub fn shard(mut self, shard: &str) -> Rule {
        self.shard = Some(shard.to_owned());
        self
    }

    /// Only requests for which `predicate` holds.
    pub fn matching(
        mut self,
        predicate: impl Fn(&ProxiedRequest) -> bool + Send + Sync + 'static,
    ) -> Rule {
        self.predicate = Some(Box::new(predicate));
        self
    }

    /// Only the first `count` matching requests.
    pub fn first(mut self, count: u32) -> Rule {
        self.limit = Some(count);
        self
    }

    fn matches(&self, request: &ProxiedRequest) -> bool {
        self.operation
            .as_ref()
            .is_none_or(|op| *op == request.operation)
            && self
                .shard
                .as_ref()
                .is_none_or(|shard| request.shard.as_ref() == Some(shard))
            && self.predicate.as_ref().is_none_or(|p| p(request))
    }
}

struct ActiveRule {
    rule: Rule,
    active: AtomicBool,
    hits: AtomicU32,
}

impl ActiveRule {
    /// Claims one application of the rule, counting it, if it applies.
    fn claim(&self, request: &ProxiedRequest) -> bool {
        self.active.load(Ordering::SeqCst)
            && self.rule.matches(request)
            && self
                .hits
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |hits| {
                    self.rule.limit.is_none_or(|l| hits < l).then_some(hits + 1)
                })
                .is_ok()
    }
}

/// A rule added to a proxy: its hit count and its on/off switch.
#[derive(Clone)]
pub struct RuleHandle(Arc<ActiveRule>);

impl RuleHandle {
    /// How many requests the fault was applied to.
    pub fn hits(&self) -> u32 {
        self.0.hits.load(Ordering::SeqCst)
    }

    /// Switches the rule on or off (rules start on).
    pub fn set_active(&self, active: bool) {
        self.0.active.store(active, Ordering::SeqCst);
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub operation: String,
    pub shard: Option<String>,
    /// When the request arrived at the proxy.
    pub at: Instant,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Arc<ActiveRule>>>,
    seen: Mutex<Vec<SeenRequest>>,
    /// Shard iterator → shard, from GetShardIterator and GetRecords answers.
    iterators: Mutex<HashMap<String, String>>,
    /// Open sockets by id, shut down when the proxy stops.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_socket: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
}

impl Shared {
    /// Registers `stream` so stopping the proxy shuts it down; unregistered
    /// when the guard drops.
    fn track(self: &Arc<Self>, stream: &TcpStream) -> SocketGuard {
        let id = self.next_socket.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            self.sockets.lock().unwrap().insert(id, clone);
        }
        if self.stopping.load(Ordering::SeqCst) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        SocketGuard {
            shared: self.clone(),
            id,
        }
    }

    /// Sleeps `duration`, or less if the proxy stops; whether it slept it all.
    fn pause(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        while !self.stopping.load(Ordering::SeqCst) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(Duration::from_millis(20)));
        }
        false
    }
}

struct SocketGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.shared.sockets.lock().unwrap().remove(&self.id);
    }
}

/// A running proxy; dropping it closes every connection and joins its threads.
pub struct FaultProxy {
    url: String,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let acceptor = thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || accept_loop(listener, &upstream, &accepting))
            .expect("start the fault proxy");
        FaultProxy {
            url,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds a rule after the existing ones.
    pub fn add(&self, rule: Rule) -> RuleHandle {
        let active = Arc::new(ActiveRule {
            rule,
            active: AtomicBool::new(true),
            hits: AtomicU32::new(0),
        });
        self.shared.rules.lock().unwrap().push(active.clone());
        RuleHandle(active)
    }

    /// Removes every rule: from now on requests are forwarded untouched.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for socket in self.shared.sockets.lock().unwrap().values() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wakes the acceptor, which then sees `stopping`.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let workers = std::mem::take(&mut *self.shared.workers.lock().unwrap());
        for worker in workers {
            let _ = worker.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: &str, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let (shared_here, upstream) = (shared.clone(), upstream.to_owned());
        let worker = thread::Builder::new()
            .name("fault-proxy-conn".into())
            .spawn(move || serve_connection(stream, &upstream, &shared_here));
        let mut workers = shared.workers.lock().unwrap();
        workers.retain(|w| !w.is_finished());
        workers.extend(worker.ok());
    }
}

/// An HTTP/1.1 message: start line, headers (names lower-cased), body.
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Start line and headers, with our own content length and no
    /// hop-by-hop headers.
    fn head(&self, extra: &str) -> String {
        let mut head = format!("{}\r\n", self.start);
        for (name, value) in &self.headers {
            if !matches!(
                name.as_str(),
                "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "host"
            ) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str(&format!(
            "content-length: {}\r\n{extra}\r\n",
            self.body.len()
        ));
        head
    }
}

/// Reads one message; `until_eof_without_length` for responses, whose body
/// may run to the end of the connection.
fn read_message(reader: &mut impl BufRead, until_eof_without_length: bool) -> Option<Message> {
    let mut start = String::new();
    if reader.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut message = Message {
        start: start.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    };
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        message.body = read_chunked(reader)?;
    } else if let Some(length) = message.header("content-length") {
        message.body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut message.body).ok()?;
    } else if until_eof_without_length {
        reader.read_to_end(&mut message.body).ok()?;
    }
    Some(message)
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            // Trailers are not used by the emulators; the CRLF was the end.
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn serve_connection(client: TcpStream, upstream: &str, shared: &Arc<Shared>) {
    let _guard = shared.track(&client);
    client.set_read_timeout(Some(CLIENT_IDLE_TIMEOUT)).ok();
    let Ok(reading) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reading);
    let mut writer = client;
    while let Some(request) = read_message(&mut reader, false) {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let proxied = describe(&request, shared);
        let fault = shared
            .rules
            .lock()
            .unwrap()
            .iter()
            .find(|rule| rule.claim(&proxied))
            .map(|rule| rule.rule.fault.clone());
        shared.seen.lock().unwrap().push(SeenRequest {
            operation: proxied.operation.clone(),
            shard: proxied.shard.clone(),
            at: Instant::now(),
            fault: fault.clone(),
        });
        let keep_open = match fault {
            None => respond(&mut writer, forward(upstream, &request, &proxied, shared)),
            Some(fault) => apply(fault, &mut writer, upstream, &request, &proxied, shared),
        };
        if !keep_open {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Applies `fault`; whether the connection stays usable.
fn apply(
    fault: Fault,
    writer: &mut TcpStream,
    upstream: &str,
    request: &Message,
    proxied: &ProxiedRequest,
    shared: &Arc<Shared>,
) -> bool {
    match fault {
        Fault::Hang(duration) => {
            shared.pause(duration);
            false
        }
        Fault::HangUntil(end) => {
            shared.pause(end.saturating_duration_since(Instant::now()));
            false
        }
        Fault::Delay(duration) => {
            shared.pause(duration) && respond(writer, forward(upstream, request, proxied, shared))
        }
        Fault::CloseBeforeForwarding => false,
        Fault::ForwardThenClose => {
            forward(upstream, request, proxied, shared);
            false
        }
        Fault::Respond { status, body } => {
            let answer = Message {
                start: format!("HTTP/1.1 {status} Injected"),
                headers: vec![("content-type".into(), "application/x-amz-json-1.1".into())],
                body: body.into_bytes(),
            };
            respond(writer, Some(answer))
        }
        Fault::TruncateBody => {
            if let Some(answer) = forward(upstream, request, proxied, shared) {
                let _ = writer.write_all(answer.head("").as_bytes());
                let _ = writer.write_all(&answer.body[..answer.body.len() / 2]);
            }
            false
        }
        Fault::Trickle { chunk, pause } => {
            let Some(answer) = forward(upstream, request, proxied, shared) else {
                return false;
            };
            if writer.write_all(answer.head("").as_bytes()).is_err() {
                return false;
            }
            for piece in answer.body.chunks(chunk.max(1)) {
                if !shared.pause(pause) || writer.write_all(piece).is_err() {
                    return false;
                }
            }
            true
        }
    }
}

/// Sends `answer` to the client; whether the connection stays usable.
fn respond(writer: &mut TcpStream, answer: Option<Message>) -> bool {
    let Some(answer) = answer else {
        return false;
    };
    writer.write_all(answer.head("").as_bytes()).is_ok()
        && writer.write_all(&answer.body).is_ok()
        && writer.flush().is_ok()
}

/// Operation and shard of a request.
fn describe(request: &Message, shared: &Shared) -> ProxiedRequest {
    let operation = request
        .header("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let lease_key = ["Key", "Item"]
        .iter()
        .find_map(|field| body[field]["shard_id"]["S"].as_str());
    let shard = if let Some(shard) = body["ShardId"].as_str() {
        Some(shard.to_owned())
    } else if let Some(iterator) = body["ShardIterator"].as_str() {
        shared.iterators.lock().unwrap().get(iterator).cloned()
    } else {
        lease_key
            .and_then(|key| key.rsplit(':').next())
            .map(str::to_owned)
    };
    ProxiedRequest {
        operation,
        shard,
        body,
    }
}

/// The upstream's answer to `request` (`None` if there was none), after
/// remembering any shard iterator it hands out.
fn forward(
    upstream: &str,
    request: &Message,
    proxied: &ProxiedRequest,
    shared: &Arc<Shared>,
) -> Option<Message> {
    let address = upstream.parse().ok()?;
    let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    let _guard = shared.track(&stream);
    stream.set_read_timeout(Some(UPSTREAM_TIMEOUT)).ok();
    let mut writer = stream.try_clone().ok()?;
    let outgoing = request.head(&format!("host: {upstream}\r\nconnection: close\r\n"));
    writer.write_all(outgoing.as_bytes()).ok()?;
    writer.write_all(&request.body).ok()?;
    let answer = read_message(&mut BufReader::new(stream), true)?;
    if let Some(shard) = &proxied.shard {
        remember_iterator(&answer.body, shard, shared);
    }
    Some(answer)
}

fn remember_iterator(body: &[u8], shard: &str, shared: &Shared) {
    // Only the iterator fields are decoded, not the records.
    #[derive(serde::Deserialize)]
    struct Iterators {
        #[serde(rename = "ShardIterator")]
        first: Option<String>,
        #[serde(rename = "NextShardIterator")]
        next: Option<String>,
    }
    if let Ok(found) = serde_json::from_slice::<Iterators>(body) {
        let mut iterators = shared.iterators.lock().unwrap();
        for iterator in [found.first, found.next].into_iter().flatten() {
            iterators.insert(iterator, shard.to_owned());
        }
    }
}
