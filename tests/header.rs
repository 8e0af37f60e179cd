//! The C header pipeline: the committed include/kcheck.h is exactly what
//! build.rs generates, it compiles as strict C and C++, and the exported
//! version functions answer.

use std::ffi::CStr;
use std::path::Path;
use std::process::Command;

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/kcheck.h"));

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The header as committed at HEAD (or on disk outside a git checkout).
fn committed_header() -> String {
    let git = Command::new("git")
        .args(["show", "HEAD:include/kcheck.h"])
        .current_dir(root())
        .output();
    match git {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        _ => std::fs::read_to_string(root().join("include/kcheck.h")).unwrap(),
    }
}

#[test]
fn committed_header_matches_the_generated_one() {
    assert!(
        committed_header() == GENERATED,
        "include/kcheck.h differs from what build.rs generates: run `cargo build` and commit include/kcheck.h"
    );
}

#[test]
fn header_has_guard_and_version_macros_from_cargo_toml() {
    assert!(GENERATED.contains("#ifndef KCHECK_H"));
    assert!(GENERATED.contains(&format!(
        "#define KCHECK_VERSION \"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(GENERATED.contains(&format!(
        "#define KCHECK_VERSION_MAJOR {}",
        env!("CARGO_PKG_VERSION_MAJOR")
    )));
}

fn compiles(compiler: &str, args: &[&str], source: &str, extension: &str) {
    let dir = std::env::temp_dir().join(format!("kcheck-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("check.{extension}"));
    std::fs::write(&file, source).unwrap();
    let include = root().join("include");
    let output = Command::new(compiler)
        .args(args)
        .arg("-I")
        .arg(&include)
        .arg("-fsyntax-only")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{compiler} not runnable: {e}"));
    assert!(
        output.status.success(),
        "{compiler} rejected the header:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn header_compiles_as_strict_c_and_cpp_and_twice_in_one_unit() {
    let source = "#include \"kcheck.h\"\n#include \"kcheck.h\"\nint main(void) { return kcheck_abi_version() == KCHECK_ABI_VERSION ? 0 : 1; }\n";
    compiles(
        "cc",
        &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"],
        source,
        "c",
    );
    compiles(
        "c++",
        &["-std=c++11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"],
        source,
        "cpp",
    );
}

#[test]
fn version_functions_answer() {
    let version = unsafe { CStr::from_ptr(kcheck::ffi::kcheck_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(
        kcheck::ffi::kcheck_abi_version(),
        kcheck::ffi::KCHECK_ABI_VERSION
    );
}
