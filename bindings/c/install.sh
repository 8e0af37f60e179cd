#!/bin/sh
# Builds libkcheck (shared and static) in release mode and installs it as a
# C library, with the file names `cargo cinstall` uses (see the capi sections
# of Cargo.toml):
#
#   LIBDIR/libkcheck.so.ABI.MINOR.PATCH   the library, SONAME libkcheck.so.ABI
#   LIBDIR/libkcheck.so.ABI  -> libkcheck.so.ABI.MINOR.PATCH  (the loader's name)
#   LIBDIR/libkcheck.so      -> libkcheck.so.ABI.MINOR.PATCH  (what -lkcheck finds)
#   LIBDIR/libkcheck.a                    for static linking
#   LIBDIR/pkgconfig/kcheck.pc            from bindings/c/kcheck.pc.in
#   PREFIX/include/kcheck.h
#
# ABI is KCHECK_ABI_VERSION (the SONAME build.rs sets); MINOR.PATCH are the
# crate version's. Both are read from the header the build regenerates.
# Options: see usage below.
set -eu

usage() {
    cat <<'EOF'
Usage: bindings/c/install.sh [--prefix DIR] [--libdir DIR]
  --prefix DIR   absolute; default /usr/local
  --libdir DIR   absolute, or relative to the prefix; default PREFIX/lib
  DESTDIR=DIR    staged install: files go under DIR, kcheck.pc names PREFIX
Builds in release mode with cargo (CARGO_TARGET_DIR is honoured) first.
EOF
}

# Bad usage: exit 2 with the usage.
die() {
    printf 'install.sh: %s\n' "$1" >&2
    usage >&2
    exit 2
}

fail() {
    printf 'install.sh: %s\n' "$1" >&2
    exit 1
}

# pkg-config splits Libs on spaces and sed below uses | as its delimiter:
# refuse what either would mangle rather than write a broken kcheck.pc.
check_path() {
    case $2 in
        '') die "$1 needs a directory" ;;
        *[[:space:]\"\'\\\$\#\|\&]*) die "$1 '$2': spaces and the characters \" ' \\ \$ # | & are not supported in installed paths" ;;
    esac
}

prefix=/usr/local
libdir=
while [ $# -gt 0 ]; do
    case $1 in
        --prefix | --libdir)
            [ $# -ge 2 ] || die "$1 needs a directory"
            option=$1
            value=$2
            shift 2
            ;;
        --prefix=* | --libdir=*)
            option=${1%%=*}
            value=${1#*=}
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1'" ;;
    esac
    check_path "$option" "$value"
    case $option in
        --prefix) prefix=$value ;;
        --libdir) libdir=$value ;;
    esac
done

case $prefix in
    /*) ;;
    *) die "--prefix '$prefix' must be an absolute path (kcheck.pc records it)" ;;
esac
# Without a trailing slash, so that joined paths have single slashes.
base=${prefix%/}
[ -n "$base" ] && prefix=$base
case $libdir in
    '') libdir=$base/lib ;;
    /*) ;;
    *) libdir=$base/$libdir ;;
esac
[ "$libdir" = / ] || libdir=${libdir%/}
includedir=$base/include
destdir=${DESTDIR:-}

for tool in cargo sed; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is required and not on PATH"
done

lib_dest=$destdir$libdir
include_dest=$destdir$includedir
cannot_write() {
    fail "cannot write to $1: choose a writable --prefix (or DESTDIR), or run as a user who may write there"
}
# Refused now rather than after a build of several minutes.
for dir in "$lib_dest" "$include_dest"; do
    parent=$dir
    while [ ! -e "$parent" ]; do parent=$(dirname "$parent"); done
    if [ ! -d "$parent" ] || [ ! -w "$parent" ]; then cannot_write "$dir"; fi
done

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/kcheck-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# Both library kinds from one rustc run, only here: a staticlib in [lib]
# crate-type would make every normal build archive all of std and the deps.
# native-static-libs names what the archive needs from the system.
echo "== building libkcheck.so and libkcheck.a (release)"
{
    status=0
    cargo rustc --manifest-path "$root/Cargo.toml" --release --locked --lib \
        --features capi --crate-type cdylib,staticlib -- --print native-static-libs 2>&1 ||
        status=$?
    echo "$status" >"$work/status"
} | tee "$work/build.log"
[ "$(cat "$work/status")" = 0 ] || fail "the build failed; nothing was installed"
libs_private=$(sed -n 's/^.*note: native-static-libs: *//p' "$work/build.log" | tail -n 1)
[ -n "$libs_private" ] || fail "rustc printed no native-static-libs line; cannot write Libs.private"

target_dir=$(cargo metadata --manifest-path "$root/Cargo.toml" --format-version 1 --no-deps --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
built=$target_dir/release
for file in "$built/libkcheck.so" "$built/libkcheck.a" "$root/include/kcheck.h"; do
    [ -f "$file" ] || fail "the build did not produce $file"
done

header_value() {
    sed -n "s/^#define $1 \"\{0,1\}\([0-9.]*\)\"\{0,1\}\$/\1/p" "$root/include/kcheck.h"
}
abi=$(header_value KCHECK_ABI_VERSION)
minor=$(header_value KCHECK_VERSION_MINOR)
patch=$(header_value KCHECK_VERSION_PATCH)
version=$(header_value KCHECK_VERSION)
for value in "$abi" "$minor" "$patch" "$version"; do
    [ -n "$value" ] || fail "include/kcheck.h lacks the KCHECK_*VERSION* macros"
done
real=libkcheck.so.$abi.$minor.$patch
soname=libkcheck.so.$abi

# Relative to ${prefix} where possible, so `pkg-config --define-prefix` can
# relocate a copied tree.
case $libdir in
    # shellcheck disable=SC2016 # a pkg-config variable, written as is
    "$base/lib") pc_libdir='${exec_prefix}/lib' ;;
    *) pc_libdir=$libdir ;;
esac
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$pc_libdir|" -e "s|@INCLUDEDIR@|\${prefix}/include|" \
    -e "s|@VERSION@|$version|" -e "s|@LIBS_PRIVATE@|$libs_private|" \
    "$root/bindings/c/kcheck.pc.in" >"$work/kcheck.pc"

make_dir() {
    if ! mkdir -p "$1" 2>/dev/null || [ ! -w "$1" ]; then cannot_write "$1"; fi
}
# Copies then renames: overwriting a library in place would corrupt it under
# the programs that have it mapped.
install_file() {
    if ! { cp "$1" "$3.tmp.$$" && chmod "$2" "$3.tmp.$$" && mv -f "$3.tmp.$$" "$3"; }; then
        rm -f "$3.tmp.$$"
        fail "could not install $3"
    fi
    echo "installed $3"
}
link() {
    ln -sf "$1" "$2"
    echo "installed $2 -> $1"
}

make_dir "$lib_dest"
make_dir "$lib_dest/pkgconfig"
make_dir "$include_dest"
install_file "$built/libkcheck.so" 0755 "$lib_dest/$real"
link "$real" "$lib_dest/$soname"
link "$real" "$lib_dest/libkcheck.so"
install_file "$built/libkcheck.a" 0644 "$lib_dest/libkcheck.a"
install_file "$root/include/kcheck.h" 0644 "$include_dest/kcheck.h"
install_file "$work/kcheck.pc" 0644 "$lib_dest/pkgconfig/kcheck.pc"

# The loader finds a new library in a system directory only through its
# cache; a private prefix is left alone (LD_LIBRARY_PATH or an rpath).
if [ -z "$destdir" ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1 &&
    ldconfig -v -N 2>/dev/null | grep -q "^$libdir:"; then
    ldconfig && echo "ran ldconfig"
fi

echo "build with: cc app.c \$(pkg-config --cflags --libs kcheck)"
case :${PKG_CONFIG_PATH:-}: in
    *":$libdir/pkgconfig:"*) ;;
    *) echo "(if pkg-config does not find kcheck: export PKG_CONFIG_PATH=$libdir/pkgconfig)" ;;
esac
