//! Serves the local emulators until stdin closes or the process is killed.
//!
//! Prints one JSON line with both endpoints, so a parent process (pytest, the
//! C tests, the benchmark) can read where to connect:
//! `{"kinesis":"http://127.0.0.1:P","dynamodb":"http://127.0.0.1:Q"}`.
//! Flags: `--iterator-ttl-seconds N`, `--enforce-limits`.

use kcheck_emulators::Options;

fn main() {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterator-ttl-seconds" => {
                options.iterator_ttl_seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage("--iterator-ttl-seconds takes a number"));
            }
            "--enforce-limits" => options.enforce_limits = true,
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    kcheck_emulators::serve_until_stdin_closes(options);
}

fn usage(problem: &str) -> ! {
    eprintln!("kcheck-emulators: {problem}\nusage: kcheck-emulators [--iterator-ttl-seconds N] [--enforce-limits]");
    std::process::exit(2)
}
