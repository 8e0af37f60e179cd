"""Installing the package as a user would: `python -m build` makes an sdist,
then a wheel from that sdist (a cargo release build of the crate the sdist
carries); auditwheel checks the wheel's manylinux tag; the wheel alone
installs into a fresh venv, whose consumer reads from the emulators.

Slow (a release build), so opt-in: KCHECK_TEST_INSTALL=1, which
tests/run_all.sh sets. The build shares the repository's target directory
(CARGO_TARGET_DIR) so that the dependencies are not built again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path
from typing import Dict

import pytest

from conftest import PACKAGE_DIR, REPO, payloads

pytestmark = pytest.mark.skipif(
    os.environ.get("KCHECK_TEST_INSTALL") != "1",
    reason="set KCHECK_TEST_INSTALL=1: builds the sdist and wheel (a release build; needs PyPI for the build backend)",
)

# What the sdist must carry to build the library on its own.
SDIST_CRATE_FILES = ("rust/Cargo.toml", "rust/Cargo.lock", "rust/build.rs", "rust/src/lib.rs", "rust/src/ffi/mod.rs")


def build_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KCHECK_LIBRARY"}
    env.setdefault("CARGO_TARGET_DIR", str(REPO / "target"))
    # The isolated build environment gets the pinned backend.
    env["PIP_CONSTRAINT"] = str(PACKAGE_DIR / "requirements-build.txt")
    return env


@pytest.mark.timeout(1800)
def test_wheel_built_from_the_sdist_installs_and_consumes(tmp_path: Path, emulators, kinesis, stream: str) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(PACKAGE_DIR)],
        check=True,
        env=build_env(),
        cwd=tmp_path,
        timeout=1700,
    )
    (sdist,) = dist.glob("kcheck-*.tar.gz")
    (wheel,) = dist.glob("kcheck-*.whl")

    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [name for name in SDIST_CRATE_FILES if name not in names]
    assert not missing, f"the sdist lacks {missing}"
    assert not any(name.endswith(".so") for name in names), "the sdist carries a built library"

    with zipfile.ZipFile(wheel) as archive:
        libraries = [name for name in archive.namelist() if ".so" in Path(name).name]
    assert libraries == ["kcheck/libkcheck.so"]

    # py3-none-manylinux_2_NN_<arch>, the tag auditwheel finds the library allows.
    python_tag, abi_tag, platform_tag = wheel.name[: -len(".whl")].split("-")[-3:]
    assert (python_tag, abi_tag) == ("py3", "none")
    assert re.fullmatch(r"manylinux_2_\d+_\w+", platform_tag), wheel.name
    show = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True, timeout=120
    )
    assert show.returncode == 0, show.stdout + show.stderr
    report = " ".join(show.stdout.split())
    consistent = re.search(r'consistent with the following platform tag: "([^"]+)"', report)
    assert consistent is not None, report
    assert consistent.group(1) == platform_tag, report

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "KCHECK_LIBRARY"}
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    kinesis.put_records(stream, payloads(3))
    code = f"""
        import kcheck
        print(kcheck.library_path)
        with kcheck.Consumer({stream!r}, endpoint_url={emulators.kinesis!r}, idle_timeout=0.5) as consumer:
            print(len(list(consumer)))
    """
    run = subprocess.run(
        [str(python), "-c", textwrap.dedent(code)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    path, count = run.stdout.split()
    assert Path(path).resolve().is_relative_to(env_dir.resolve()), path
    assert Path(path).parent.parent.name == "site-packages"
    assert Path(path).name == "libkcheck.so" and Path(path).parent.name == "kcheck"
    assert count == "3"
