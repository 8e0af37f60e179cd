"""Builds libkcheck.so with cargo and bundles it into the kcheck package.

`pip install ./bindings/python` (from the repository root) runs
`cargo build --release --locked -p kcheck` in the repository two levels up
and copies target/release/libkcheck.so into the package as
kcheck/libkcheck.so. Set KCHECK_LIBRARY_TO_BUNDLE to bundle an already
built library instead (no cargo run). The wheel is tagged for this
platform (py3-none-<platform>): the library is native code, but no Python
extension module.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # older setuptools
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LIBRARY = "libkcheck.so"


def cargo_version() -> str:
    """The crate's version, so the package and the library never disagree."""
    manifest = (REPO / "Cargo.toml").read_text()
    package = manifest.split("[package]", 1)[1]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no version in {REPO / 'Cargo.toml'}")
    return match.group(1)


def built_library() -> Path:
    explicit = os.environ.get("KCHECK_LIBRARY_TO_BUNDLE")
    if explicit:
        return Path(explicit)
    cargo = os.environ.get("CARGO", "cargo")
    subprocess.run([cargo, "build", "--release", "--locked", "-p", "kcheck"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / LIBRARY


class BuildWithLibrary(build_py):
    """build_py that also builds libkcheck.so and copies it into the package."""

    def run(self) -> None:
        super().run()
        library = built_library()
        if not library.is_file():
            raise RuntimeError(f"{library} was not built")
        destination = Path(self.build_lib) / "kcheck" / LIBRARY
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, destination)
        os.chmod(destination, 0o755)
        if getattr(self, "editable_mode", False):
            # Editable installs import from the source tree.
            shutil.copyfile(library, HERE / "kcheck" / LIBRARY)


class PlatformWheel(bdist_wheel):
    """The wheel holds a native library: tag it for this platform, any CPython."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):  # type: ignore[no-untyped-def]
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    version=cargo_version(),
    cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel},
)
