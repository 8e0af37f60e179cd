//! A tiny loopback HTTP/1.1 server for what no emulator serves: misbehaving
//! proxies (garbage, truncated bodies, dropped connections) and metadata
//! endpoints. It records every request so tests can assert on them.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the stub saw it.
#[derive(Debug, Clone)]
pub struct StubRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl StubRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The same request with another JSON body (for forwarding part of it).
    pub fn with_body(&self, body: &serde_json::Value) -> StubRequest {
        let body = serde_json::to_vec(body).unwrap();
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| name != "content-length")
            .cloned()
            .collect();
        headers.push(("content-length".into(), body.len().to_string()));
        StubRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            headers,
            body,
        }
    }
}

/// What the stub answers.
#[derive(Debug, Clone)]
pub enum StubResponse {
    /// A complete response.
    Full {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
    },
    /// Declares `declared_len` bytes but sends `body` and closes.
    Truncated { declared_len: usize, body: Vec<u8> },
    /// Closes the connection without answering.
    Drop,
}

impl StubResponse {
    pub fn json(status: u16, body: &str) -> StubResponse {
        StubResponse::Full {
            status,
            content_type: "application/x-amz-json-1.1",
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: &str) -> StubResponse {
        StubResponse::Full {
            status,
            content_type,
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = dyn Fn(&StubRequest) -> StubResponse + Send + Sync;

/// A running stub; stops accepting when dropped.
pub struct StubServer {
    url: String,
    requests: Arc<Mutex<Vec<StubRequest>>>,
    stop: Arc<AtomicBool>,
}

impl StubServer {
    pub fn start(
        handler: impl Fn(&StubRequest) -> StubResponse + Send + Sync + 'static,
    ) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
        listener.set_nonblocking(true).expect("nonblocking stub");
        let url = format!("http://{}", listener.local_addr().expect("stub address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen, stopped) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (seen, handler) = (seen.clone(), handler.clone());
                        thread::spawn(move || serve_connection(stream, &seen, &*handler));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        StubServer {
            url,
            requests,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_connection(stream: TcpStream, seen: &Mutex<Vec<StubRequest>>, handler: &Handler) {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    // Keep-alive: serve requests until the client closes.
    while let Some(request) = read_request(&mut reader) {
        seen.lock().unwrap().push(request.clone());
        let keep_open = match handler(&request) {
            StubResponse::Full {
                status,
                content_type,
                body,
            } => {
                let head = format!(
                    "HTTP/1.1 {status} Stub\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                writer.write_all(head.as_bytes()).is_ok() && writer.write_all(&body).is_ok()
            }
            StubResponse::Truncated { declared_len, body } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {declared_len}\r\n\r\n"
                );
                let _ = writer.write_all(head.as_bytes());
                let _ = writer.write_all(&body);
                false
            }
            StubResponse::Drop => false,
        };
        if !keep_open {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<StubRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(StubRequest {
        method,
        path,
        headers,
        body,
    })
}

/// Sends `request` on to `upstream` (`http://host:port`) and returns its
/// answer: the stub then works as a fault-injecting proxy.
pub fn forward(upstream: &str, request: &StubRequest) -> StubResponse {
    let address = upstream.trim_start_matches("http://");
    let mut stream = match TcpStream::connect(address) {
        Ok(stream) => stream,
        Err(_) => return StubResponse::Drop,
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n",
        request.method, request.path
    );
    for (name, value) in &request.headers {
        if !matches!(name.as_str(), "host" | "connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&request.body).is_err() {
        return StubResponse::Drop;
    }
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).is_err() {
        return StubResponse::Drop;
    }
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return StubResponse::Drop;
    };
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    StubResponse::Full {
        status,
        content_type: "application/x-amz-json-1.1",
        body: response[split + 4..].to_vec(),
    }
}
