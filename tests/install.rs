//! kcheck installs like a C library: `bindings/c/install.sh` into a
//! temporary prefix lays out the versioned library, its two links, the
//! archive, the header and `kcheck.pc` as `cargo cinstall` would, and
//! `tests/c/installed.c` builds with nothing but `pkg-config --cflags --libs
//! kcheck` — once against the shared library, once (`--static`) against
//! `libkcheck.a` alone. A staged install (DESTDIR) and refused arguments too.
//!
//! The script makes a release build in this cargo target directory: slow the
//! first time, reused afterwards (and by `cargo build --release`). Skipped,
//! with the reason printed, where `pkg-config` or `cc` is missing.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::readelf_dynamic;

/// Bounds a script run that has to build: a cold release build of every
/// dependency on a 2-core machine, plus waiting for another cargo's lock.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);
const STRICT_C: &[&str] = &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("bindings/c/install.sh")
}

/// `libkcheck.so.<ABI>.<minor>.<patch>` and `libkcheck.so.<ABI>`.
fn library_names() -> (String, String) {
    let abi = kcheck::ffi::KCHECK_ABI_VERSION;
    let minor = env!("CARGO_PKG_VERSION_MINOR");
    let patch = env!("CARGO_PKG_VERSION_PATCH");
    (
        format!("libkcheck.so.{abi}.{minor}.{patch}"),
        format!("libkcheck.so.{abi}"),
    )
}

fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = ["pkg-config", "cc"]
        .into_iter()
        .filter(|tool| {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_or(true, |s| !s.success())
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// A fresh directory under target/tmp, removed when the test passes.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("install-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `command` in its own process group with its output in files (no
/// pipe to fill); kills the whole group (the script, cargo, rustc) and
/// panics if it outlives `timeout`.
fn run(command: &mut Command, timeout: Duration, scratch: &Path) -> Finished {
    let started = Instant::now();
    let out_path = scratch.join("stdout.log");
    let err_path = scratch.join("stderr.log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} did not start: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {timeout:?}; stderr:\n{}",
                read(&err_path)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        took: started.elapsed(),
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

fn install(args: &[&str], destdir: Option<&Path>, scratch: &Path) -> Finished {
    let mut command = Command::new(script());
    command.args(args).env_remove("DESTDIR");
    if let Some(destdir) = destdir {
        command.env("DESTDIR", destdir);
    }
    let finished = run(&mut command, BUILD_TIMEOUT, scratch);
    assert!(
        finished.status.success(),
        "install.sh {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    finished
}

/// Every file and link under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, found);
            } else {
                let relative = path.strip_prefix(root).expect("under root");
                found.push(relative.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

/// The layout under `root` (a prefix, or DESTDIR + prefix) with `libdir`
/// relative to it: exact file set, modes, relative links, SONAME, header.
fn check_layout(root: &Path, libdir: &str) {
    let (real, soname) = library_names();
    let mut expected: Vec<String> = [
        format!("{libdir}/{real}"),
        format!("{libdir}/{soname}"),
        format!("{libdir}/libkcheck.so"),
        format!("{libdir}/libkcheck.a"),
        format!("{libdir}/pkgconfig/kcheck.pc"),
        "include/kcheck.h".to_owned(),
    ]
    .into();
    expected.sort();
    assert_eq!(
        tree(root),
        expected,
        "installed files under {}",
        root.display()
    );

    let lib = root.join(libdir);
    let mode = |name: &str| {
        std::fs::symlink_metadata(lib.join(name))
            .expect("installed file")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&real), 0o755, "{real} mode");
    assert_eq!(mode("libkcheck.a"), 0o644, "libkcheck.a mode");
    for link in [soname.as_str(), "libkcheck.so"] {
        let target = std::fs::read_link(lib.join(link))
            .unwrap_or_else(|e| panic!("{link} is not a symlink: {e}"));
        assert_eq!(target, Path::new(&real), "{link} points elsewhere");
    }
    let dynamic = readelf_dynamic(&lib.join(&real));
    assert!(
        dynamic.contains(&format!("Library soname: [{soname}]")),
        "{real} lacks SONAME {soname}:\n{dynamic}"
    );
    let mut magic = [0u8; 8];
    std::fs::File::open(lib.join("libkcheck.a"))
        .and_then(|mut f| f.read_exact(&mut magic))
        .expect("read libkcheck.a");
    assert_eq!(&magic, b"!<arch>\n", "libkcheck.a is not an archive");
    assert_eq!(
        std::fs::read(root.join("include/kcheck.h")).expect("installed header"),
        std::fs::read(repo().join("include/kcheck.h")).expect("repository header"),
        "the installed header differs from include/kcheck.h"
    );
}

fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let output = Command::new("pkg-config")
        .args(args)
        .arg("kcheck")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("pkg-config");
    assert!(
        output.status.success(),
        "pkg-config {args:?} kcheck: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Compiles tests/c/installed.c with `flags` and nothing else.
fn compile(flags: &[String], output: &Path) {
    let mut command = Command::new("cc");
    command
        .args(STRICT_C)
        .arg(repo().join("tests/c/installed.c"))
        .arg("-o")
        .arg(output)
        .args(flags);
    let result = command.output().expect("cc");
    assert!(
        result.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

fn expected_output() -> String {
    format!(
        "kcheck {} abi {}\n",
        env!("CARGO_PKG_VERSION"),
        kcheck::ffi::KCHECK_ABI_VERSION
    )
}

#[test]
fn installs_into_a_prefix_and_links_with_only_pkg_config() {
    if let Some(missing) = missing_tools() {
        eprintln!("skipped: {missing} not found (install pkg-config and a C compiler)");
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("prefix");
    let prefix = scratch.0.join("prefix");
    let prefix_arg = prefix.to_str().expect("UTF-8 path");
    let installed = install(&["--prefix", prefix_arg], None, &scratch.0);
    check_layout(&prefix, "lib");
    let (real, soname) = library_names();
    assert!(
        installed.stdout.contains(&format!(
            "installed {}/lib/{soname} -> {real}",
            prefix.display()
        )),
        "install.sh did not say what it installed:\n{}",
        installed.stdout
    );
    let pc = read(&prefix.join("lib/pkgconfig/kcheck.pc"));
    for line in [
        format!("prefix={}", prefix.display()),
        "Libs: -L${libdir} -lkcheck".to_owned(),
        format!("Version: {}", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(
            pc.lines().any(|l| l == line),
            "kcheck.pc lacks {line:?}:\n{pc}"
        );
    }
    let private = pc
        .lines()
        .find_map(|l| l.strip_prefix("Libs.private: "))
        .unwrap_or_default();
    assert!(
        private.contains("-lc") && private.split(' ').all(|f| f.starts_with("-l")),
        "Libs.private should be rustc's native-static-libs, is {private:?}"
    );

    // Shared: only pkg-config's flags, the loader pointed at the prefix.
    let shared = scratch.0.join("installed-shared");
    compile(&pkg_config(&prefix, &["--cflags", "--libs"]), &shared);
    let dynamic = readelf_dynamic(&shared);
    assert!(
        dynamic.contains(&format!("Shared library: [{soname}]")),
        "the program does not NEED {soname}:\n{dynamic}"
    );
    let lib = prefix.join("lib");
    let ran = run(
        Command::new(&shared).env("LD_LIBRARY_PATH", &lib),
        SHORT_TIMEOUT,
        &scratch.0,
    );
    assert!(ran.status.success(), "{}: {}", ran.status, ran.stderr);
    assert_eq!(ran.stdout, expected_output());
    let ldd = Command::new("ldd")
        .arg(&shared)
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .expect("ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    assert!(
        ldd.contains(&format!(
            "{soname} => {}",
            lib.join(soname.as_str()).display()
        )),
        "the loader does not resolve {soname} in the prefix:\n{ldd}"
    );

    // Static: the same flags with --static, -lkcheck taken from the archive;
    // the program then needs no libkcheck.so at all.
    let flags: Vec<String> = pkg_config(&prefix, &["--static", "--cflags", "--libs"])
        .into_iter()
        .flat_map(|flag| {
            if flag == "-lkcheck" {
                vec!["-Wl,-Bstatic".into(), flag, "-Wl,-Bdynamic".into()]
            } else {
                vec![flag]
            }
        })
        .collect();
    let fixed = scratch.0.join("installed-static");
    compile(&flags, &fixed);
    let dynamic = readelf_dynamic(&fixed);
    assert!(
        !dynamic.contains("libkcheck"),
        "the static program still needs libkcheck:\n{dynamic}"
    );
    let ran = run(
        Command::new(&fixed).env_remove("LD_LIBRARY_PATH"),
        SHORT_TIMEOUT,
        &scratch.0,
    );
    assert!(ran.status.success(), "{}: {}", ran.status, ran.stderr);
    assert_eq!(ran.stdout, expected_output());
    eprintln!(
        "install.sh took {:?}; test took {:?}",
        installed.took,
        started.elapsed()
    );
}

#[test]
fn a_staged_install_writes_under_destdir_and_names_the_prefix() {
    if let Some(missing) = missing_tools() {
        eprintln!("skipped: {missing} not found (install pkg-config and a C compiler)");
        return;
    }
    let scratch = Scratch::new("destdir");
    let stage = scratch.0.join("stage");
    // The default prefix, /usr/local, and a libdir relative to it.
    install(&["--libdir", "lib64"], Some(&stage), &scratch.0);
    assert_eq!(
        std::fs::read_dir(&stage)
            .expect("stage")
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>(),
        ["usr"],
        "files written outside DESTDIR/usr/local"
    );
    check_layout(&stage.join("usr/local"), "lib64");
    let pc = read(&stage.join("usr/local/lib64/pkgconfig/kcheck.pc"));
    for line in ["prefix=/usr/local", "libdir=/usr/local/lib64"] {
        assert!(
            pc.lines().any(|l| l == line),
            "kcheck.pc lacks {line:?}:\n{pc}"
        );
    }
}

/// Wrong arguments, and a prefix that cannot be written, stop the script
/// before it builds anything.
#[test]
fn bad_arguments_and_unwritable_prefixes_are_refused_before_building() {
    let scratch = Scratch::new("arguments");
    for args in [
        &["--prefix"][..],
        &["--frobnicate"],
        &["--prefix", "relative/dir"],
        &["--prefix", "/has space"],
        &["--libdir="],
    ] {
        let refused = run(Command::new(script()).args(args), SHORT_TIMEOUT, &scratch.0);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "install.sh {args:?}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.starts_with("install.sh: ") && refused.stderr.contains("Usage:"),
            "install.sh {args:?} should explain and show the usage:\n{}",
            refused.stderr
        );
        assert!(
            !refused.stdout.contains("building"),
            "install.sh {args:?} started a build"
        );
    }

    std::fs::write(scratch.0.join("a-file"), "").expect("write a file");
    let blocked = scratch.0.join("a-file/prefix");
    let refused = run(
        Command::new(script()).args(["--prefix", blocked.to_str().expect("UTF-8 path")]),
        SHORT_TIMEOUT,
        &scratch.0,
    );
    assert!(
        refused.status.code() == Some(1)
            && refused.stderr.contains("cannot write to")
            && !refused.stdout.contains("building"),
        "install.sh into {} should fail clearly before building ({}):\n{}",
        blocked.display(),
        refused.status,
        refused.stderr
    );
}

/// cargo-c names its files from `[package.metadata.capi.library] version`:
/// it must stay `<ABI>.<minor>.<patch>` for both installs to agree.
#[test]
fn cargo_c_metadata_matches_the_abi_and_crate_version() {
    let manifest = read(&repo().join("Cargo.toml"));
    let section = manifest
        .split("[package.metadata.capi.library]")
        .nth(1)
        .expect("Cargo.toml has [package.metadata.capi.library]");
    let version = section
        .lines()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix("version = "))
        .expect("a version in [package.metadata.capi.library]");
    let (real, _) = library_names();
    assert_eq!(
        format!("libkcheck.so.{}", version.trim_matches('"')),
        real,
        "Cargo.toml's capi library version disagrees with KCHECK_ABI_VERSION and the crate version"
    );
}
