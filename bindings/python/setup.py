"""Builds libkcheck.so with setuptools-rust and ships it inside the kcheck package.

`python -m build bindings/python` makes an sdist, then a wheel from it. The
crate lives two levels up, outside this project, so the sdist carries a copy
of it under rust/ (Cargo.toml, Cargo.lock, build.rs, src/, include/ and the
workspace's other member): a build from an sdist uses rust/Cargo.toml, a
build from a checkout the repository's Cargo.toml. setuptools-rust runs
`cargo rustc --release --locked` (set CARGO_TARGET_DIR to share a target
directory) and the library is installed as kcheck/libkcheck.so, which
kcheck._native loads with ctypes: native code, but no Python extension
module, so the wheel is tagged py3-none-<platform>, with the manylinux
platform tag that the library's glibc symbol versions allow.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension, build_rust

HERE = Path(__file__).resolve().parent
LIBRARY = "libkcheck.so"
# Where an sdist carries the crate.
STAGED_CRATE = "rust"
# What of the repository `cargo build --locked` needs: the workspace manifest
# names tests/emulators (a dev-dependency, so in Cargo.lock) and declares the
# benches and the cli test.
CRATE_FILES = (
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    "README.md",
    "src",
    "include",
    "benches",
    "tests/cli.rs",
    "tests/emulators",
)
# The libraries every manylinux policy allows a wheel to link against.
MANYLINUX_LIBRARIES = {
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}
# The oldest glibc Rust's Linux targets support.
OLDEST_GLIBC = (2, 17)


def crate_dir() -> Path:
    staged = HERE / STAGED_CRATE
    return staged if (staged / "Cargo.toml").is_file() else HERE.parents[1]


def cargo_version(crate: Path) -> str:
    """The crate's version, so the package and the library never disagree."""
    manifest = (crate / "Cargo.toml").read_text()
    package = manifest.split("[package]", 1)[1]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no version in {crate / 'Cargo.toml'}")
    return match.group(1)


class SdistWithCrate(sdist):
    """An sdist that carries the crate under rust/, so it builds on its own."""

    def make_release_tree(self, base_dir: str, files: List[str]) -> None:
        super().make_release_tree(base_dir, files)
        source = crate_dir()
        destination = Path(base_dir) / STAGED_CRATE
        for name in CRATE_FILES:
            path = source / name
            if path.is_dir():
                shutil.copytree(path, destination / name, ignore=shutil.ignore_patterns("target", "__pycache__"))
            else:
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination / name)


class BuildLibrary(build_rust):
    """Installs the cdylib as kcheck/libkcheck.so, the name kcheck._native
    loads, rather than under a Python extension module's name."""

    def get_dylib_ext_path(self, ext: RustExtension, target_fname: str) -> str:
        return str(Path(super().get_dylib_ext_path(ext, target_fname)).with_name(LIBRARY))


def glibc_needs(library: Path) -> Tuple[Optional[Tuple[int, int]], List[str]]:
    """The newest GLIBC_x.y symbol version the library needs, and the
    shared libraries it links against."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    newest: Optional[Tuple[int, int]] = None
    needed: List[str] = []
    with library.open("rb") as file:
        for section in ELFFile(file).iter_sections():
            if isinstance(section, DynamicSection):
                # pyelftools sets `needed` on DT_NEEDED entries only.
                needed.extend(tag.needed for tag in section.iter_tags("DT_NEEDED"))  # type: ignore[attr-defined]
            elif isinstance(section, GNUVerNeedSection):
                for _, auxiliaries in section.iter_versions():
                    for auxiliary in auxiliaries:
                        match = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", auxiliary.name)
                        if match:
                            version = (int(match.group(1)), int(match.group(2)))
                            newest = version if newest is None or version > newest else newest
    return newest, needed


def manylinux_tag(platform: str, libraries: Iterable[Path]) -> str:
    """linux_<arch> -> manylinux_<glibc>_<arch> when the libraries link only
    against what manylinux allows; `auditwheel show` agrees (the install test
    checks it). Without a built library (an editable install's name) the
    platform stays as it is."""
    libraries = list(libraries)
    if not platform.startswith("linux_") or not libraries:
        return platform
    glibc = OLDEST_GLIBC
    for library in libraries:
        newest, needed = glibc_needs(library)
        if not set(needed) <= MANYLINUX_LIBRARIES:
            return platform
        if newest is not None:
            glibc = max(glibc, newest)
    return f"manylinux_{glibc[0]}_{glibc[1]}_{platform[len('linux_') :]}"


class PlatformWheel(bdist_wheel):
    """The wheel holds a native library: tag it for this platform, any CPython."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", manylinux_tag(platform, Path(self.bdist_dir).rglob(LIBRARY))


setup(
    version=cargo_version(crate_dir()),
    rust_extensions=[
        RustExtension(
            "kcheck.libkcheck",
            path=str(crate_dir() / "Cargo.toml"),
            binding=Binding.NoBinding,
            cargo_manifest_args=["--locked"],
        )
    ],
    cmdclass={"sdist": SdistWithCrate, "build_rust": BuildLibrary, "bdist_wheel": PlatformWheel},
)
