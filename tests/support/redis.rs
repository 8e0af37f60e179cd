//! A throwaway `redis-server` on a free loopback port (no persistence),
//! killed on drop and restartable on the same port; and a TCP proxy in
//! front of it that can lose the answers of scripts.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A redis-server child process.
pub struct RedisServer {
    port: u16,
    extra: Vec<String>,
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts a server with extra arguments, e.g. `--requirepass`.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = RedisServer {
            port,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: Mutex::new(None),
        };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (its data goes with it: nothing is saved).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server on the same port (after `stop`).
    pub fn start_again(&self) {
        let mut slot = self.child.lock().unwrap();
        assert!(slot.is_none(), "the server is running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start redis-server ({error}): install it \
                     (apt-get install redis-server; tests/run_all.sh does so as root)"
                )
            });
        *slot = Some(child);
        drop(slot);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server never answered PING"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 64];
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        match stream.read(&mut answer) {
            // Up, whether or not it wants a password first.
            Ok(n) => answer[..n].starts_with(b"+PONG") || answer[..n].starts_with(b"-NOAUTH"),
            Err(_) => false,
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP proxy to a Redis server that can forward a script call
/// and then close the client's connection without its answer: the write
/// landed, but the client never heard of it.
pub struct RedisProxy {
    port: u16,
    lose: Arc<AtomicU32>,
    lost: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl RedisProxy {
    pub fn start(upstream_port: u16) -> RedisProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let lose = Arc::new(AtomicU32::new(0));
        let lost = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (lose_, lost_, stop_) = (lose.clone(), lost.clone(), stop.clone());
        thread::spawn(move || {
            while !stop_.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) {
                            pump(client, server, lose_.clone(), lost_.clone());
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RedisProxy {
            port,
            lose,
            lost,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Loses the answers of the next `count` script calls (EVALSHA/EVAL).
    pub fn lose_script_answers(&self, count: u32) {
        self.lose.store(count, Ordering::SeqCst);
    }

    /// How many answers were lost so far.
    pub fn lost(&self) -> u32 {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pump(client: TcpStream, server: TcpStream, lose: Arc<AtomicU32>, lost: Arc<AtomicU32>) {
    let drop_reply = Arc::new(AtomicBool::new(false));
    let (mut client_in, mut server_out) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let drop_flag = drop_reply.clone();
    thread::spawn(move || {
        let mut buffer = [0u8; 16384];
        loop {
            let n = match client_in.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buffer[..n];
            let script = contains(chunk, b"EVALSHA") || contains(chunk, b"\r\nEVAL\r\n");
            if script
                && lose
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                drop_flag.store(true, Ordering::SeqCst);
            }
            if server_out.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = server_out.shutdown(Shutdown::Both);
    });
    let (mut server_in, mut client_out) = (server, client);
    thread::spawn(move || {
        let mut buffer = [0u8; 16384];
        loop {
            let n = match server_in.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if drop_reply.load(Ordering::SeqCst) {
                // The script ran; its answer goes nowhere.
                lost.fetch_add(1, Ordering::SeqCst);
                break;
            }
            if client_out.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
        let _ = server_in.shutdown(Shutdown::Both);
    });
}
