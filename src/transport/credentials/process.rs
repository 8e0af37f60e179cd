//! A profile's `credential_process`: an external command that prints
//! credentials as JSON on its standard output.
//!
//! The command runs as the AWS SDKs run it (Go, Java, JavaScript, Rust):
//! through the system shell, `sh -c COMMAND` (`cmd.exe /C COMMAND` on
//! Windows), so quoting follows the shell's rules, with the process's
//! environment and working directory and no standard input. It must finish
//! within the timeout. Its standard output holds the secret and never
//! appears in an error or a log; an excerpt of its standard error does when
//! it fails.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::document::{not_a_document, parse_expiration, required};
use super::Credentials;

/// What errors about the JSON call it.
const OUTPUT: &str = "credential_process's output";

/// More than any credentials document; output beyond it is an error.
const MAX_OUTPUT: u64 = 1024 * 1024;

/// `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken",
/// "Expiration"}`; the last two are optional (long-lived keys).
#[derive(Deserialize)]
struct ProcessOutput {
    #[serde(rename = "Version")]
    version: Option<serde_json::Value>,
    #[serde(rename = "AccessKeyId")]
    access_key_id: Option<String>,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Option<String>,
    #[serde(rename = "SessionToken")]
    session_token: Option<String>,
    #[serde(rename = "Expiration")]
    expiration: Option<String>,
}

/// Runs `command` and parses what it prints. Errors are plain text for the
/// caller to prefix with the profile; they never quote standard output.
pub(crate) fn run(command: &str, timeout: Duration) -> Result<Credentials, String> {
    let output = execute(command, timeout)?;
    parse_output(&output)
}

/// The shell invocation of `command`.
fn shell_command(command: &str) -> Command {
    if cfg!(windows) {
        let mut shell = Command::new("cmd.exe");
        shell.args(["/C", command]);
        shell
    } else {
        let mut shell = Command::new("sh");
        shell.args(["-c", command]);
        shell
    }
}

/// Runs the command to completion within `timeout` and returns its standard
/// output, or why it failed.
fn execute(command: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut child = shell_command(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("credential_process could not be started: {e}"))?;
    // Both pipes are drained on their own threads so that a chatty process
    // never blocks on a full pipe; a grandchild that keeps a pipe open only
    // keeps its reader thread, never the caller.
    let (sender, outputs) = mpsc::channel();
    for (index, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let sender = sender.clone();
        if let Some(pipe) = pipe {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let read = pipe.take(MAX_OUTPUT + 1).read_to_end(&mut bytes);
                let _ = sender.send((index, read.map(|_| bytes)));
            });
        }
    }
    drop(sender);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "credential_process did not finish within {timeout:?} and was killed"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for credential_process failed: {e}")),
        }
    };
    let mut stdout = None;
    let mut stderr = Vec::new();
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match outputs.recv_timeout(left.max(Duration::from_millis(100))) {
            Ok((0, read)) => stdout = Some(read),
            Ok((_, read)) => stderr = read.unwrap_or_default(),
            Err(_) => break,
        }
    }
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let detail = if stderr.trim().is_empty() {
            String::new()
        } else {
            format!(
                "; its standard error starts {}",
                crate::error::excerpt(&stderr)
            )
        };
        return Err(format!("credential_process failed ({status}){detail}"));
    }
    let stdout = match stdout {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(format!("reading credential_process's output failed: {e}")),
        None => {
            return Err(
                "credential_process exited but its output was not closed in time".to_owned(),
            )
        }
    };
    if stdout.len() as u64 > MAX_OUTPUT {
        return Err(format!(
            "credential_process printed more than {MAX_OUTPUT} bytes"
        ));
    }
    String::from_utf8(stdout).map_err(|_| "credential_process's output is not UTF-8".to_owned())
}

/// Parses the JSON the process printed, describing problems without quoting
/// it.
fn parse_output(stdout: &str) -> Result<Credentials, String> {
    let output: ProcessOutput = serde_json::from_str(stdout)
        .map_err(|e| format!("credential_process's output {}", not_a_document(&e)))?;
    match output.version.as_ref().and_then(serde_json::Value::as_u64) {
        Some(1) => {}
        Some(other) => {
            return Err(format!(
                "credential_process's output has Version {other}; only Version 1 is supported"
            ))
        }
        None => return Err("credential_process's output lacks \"Version\": 1".to_owned()),
    }
    let access_key_id = required(output.access_key_id, OUTPUT, "AccessKeyId")?;
    let secret_access_key = required(output.secret_access_key, OUTPUT, "SecretAccessKey")?;
    let session_token = output.session_token.filter(|t| !t.trim().is_empty());
    let expiry = output
        .expiration
        .as_deref()
        .filter(|e| !e.trim().is_empty())
        .map(parse_expiration)
        .transpose()
        .map_err(|e| format!("credential_process's output: {e}"))?;
    Ok(Credentials::new(
        access_key_id.trim(),
        secret_access_key.trim(),
        session_token.map(|t| t.trim().to_owned()),
        expiry,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_1_documents() {
        let creds = parse_output(
            r#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":"s","SessionToken":"t","Expiration":"2099-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(creds.access_key_id(), "AKID");
        assert_eq!(creds.session_token(), Some("t"));
        assert!(creds.expiry().is_some());
        let long_lived =
            parse_output(r#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":"s"}"#).unwrap();
        assert_eq!(long_lived.expiry(), None);
        assert_eq!(long_lived.session_token(), None);
    }

    #[test]
    fn errors_never_quote_the_output() {
        for bad in [
            r#"{"Version":2,"AccessKeyId":"AKID","SecretAccessKey":"TOPSECRET"}"#,
            r#"{"AccessKeyId":"AKID","SecretAccessKey":"TOPSECRET"}"#,
            r#"{"Version":1,"AccessKeyId":"AKID","SessionToken":"TOPSECRET"}"#,
            r#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":"TOPSECRET""#,
            r#"{"Version":1,"AccessKeyId":"AKID","SecretAccessKey":7,"x":"TOPSECRET"}"#,
            "TOPSECRET",
        ] {
            let err = parse_output(bad).unwrap_err();
            assert!(!err.contains("TOPSECRET"), "{err}");
            assert!(err.starts_with("credential_process"), "{err}");
        }
        let err = parse_output(r#"{"Version":2}"#).unwrap_err();
        assert!(err.contains("Version 2"), "{err}");
    }
}
