//! The C header and the library's ABI: the committed include/kcheck.h is
//! exactly what build.rs generates and compiles as strict C and C++; the
//! library exports exactly the committed symbol list, which is exactly the
//! header's functions; the SONAME carries the ABI version.

mod support;

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
    // Tests run in parallel: one file per call.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("check-{call}.{extension}"));
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

fn tool_output(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} not runnable: {e}"));
    assert!(output.status.success(), "{program} {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Function names declared in the header: `name(` at the start of a
/// prototype, after the return type.
fn header_functions() -> Vec<String> {
    let mut names: Vec<String> = GENERATED
        .lines()
        .filter(|line| !line.starts_with(' ') && !line.starts_with('#') && line.contains('('))
        .filter_map(|line| {
            let before = &line[..line.find('(')?];
            let name = before.rsplit([' ', '*']).next()?;
            name.starts_with("kcheck_").then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn exported_symbols_are_the_committed_list_and_the_header_functions() {
    let library = support::built_library();
    let listing = tool_output("nm", &["-D", "--defined-only", library.to_str().unwrap()]);
    let mut exported: Vec<String> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .map(str::to_owned)
        .collect();
    exported.sort();
    let leaked: Vec<&String> = exported
        .iter()
        .filter(|s| !s.starts_with("kcheck_"))
        .collect();
    assert!(
        leaked.is_empty(),
        "symbols without the kcheck_ prefix: {leaked:?}"
    );

    let committed_path = root().join("tests/abi-symbols.txt");
    let committed: Vec<String> = std::fs::read_to_string(&committed_path)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let added: Vec<&String> = exported.iter().filter(|s| !committed.contains(s)).collect();
    let removed: Vec<&String> = committed.iter().filter(|s| !exported.contains(s)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the exported symbols differ from tests/abi-symbols.txt: added {added:?}, removed {removed:?}. \
         Adding a function: append it to the list. Removing one or changing a signature: \
         bump KCHECK_ABI_VERSION."
    );
    assert_eq!(header_functions(), exported, "header and library disagree");
}

#[test]
fn soname_carries_the_abi_version() {
    let dynamic = tool_output(
        "readelf",
        &["-d", support::built_library().to_str().unwrap()],
    );
    let expected = format!(
        "Library soname: [libkcheck.so.{}]",
        kcheck::ffi::KCHECK_ABI_VERSION
    );
    assert!(dynamic.contains(&expected), "{dynamic}");
}

#[test]
fn readme_c_example_compiles_as_strict_c() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("README has a C example") + 5;
    let length = readme[start..].find("```").unwrap();
    compiles(
        "cc",
        &["-std=c11", "-Wall", "-Wextra", "-Wpedantic", "-Werror"],
        &readme[start..start + length],
        "c",
    );
}
