"""The package declares the whole C ABI of include/kcheck.h, with matching types."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

from conftest import PACKAGE_DIR, REPO

import kcheck
from kcheck import _native, errors

HEADER = REPO / "include" / "kcheck.h"


def _header_text() -> str:
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def header_functions() -> Dict[str, Tuple[str, List[str]]]:
    """name -> (return type, [parameter declarations]) of every prototype."""
    found: Dict[str, Tuple[str, List[str]]] = {}
    pattern = re.compile(r"^([A-Za-z_][\w \*]*?)\s*\b(kcheck_\w+)\s*\(([^;{]*?)\)\s*;", re.MULTILINE | re.DOTALL)
    for match in pattern.finditer(_header_text()):
        restype, name, params = match.group(1).strip(), match.group(2), match.group(3)
        if restype.startswith("typedef"):
            continue
        params = " ".join(params.split())
        parameters = [] if params in ("", "void") else [p.strip() for p in params.split(",")]
        if name in found:
            # The same prototype may appear more than once; it must agree.
            assert found[name] == (restype, parameters), f"{name} is declared twice, differently"
        found[name] = (restype, parameters)
    return found


def expected_ctype(declaration: str) -> object:
    """The ctypes type a C parameter or return type should be declared with."""
    tokens = declaration.replace("*", " * ").split()
    if len(tokens) > 1 and re.fullmatch(r"\w+", tokens[-1]) and tokens[-1] != "const":
        tokens.pop()  # the parameter's name
    c_type = " ".join(tokens)
    if c_type == "const char *":
        return ctypes.c_char_p  # borrowed string, or a string argument
    if c_type == "char *":
        return ctypes.c_void_p  # owned string: freed with kcheck_string_free
    c_type = c_type.replace("const ", "")
    simple = {
        "void": None,
        "kcheck_status": ctypes.c_uint32,
        "uint32_t": ctypes.c_uint32,
        "uint64_t": ctypes.c_uint64,
        "int64_t": ctypes.c_int64,
        "size_t": ctypes.c_size_t,
        "size_t *": ctypes.POINTER(ctypes.c_size_t),
        "void *": ctypes.c_void_p,
        "char * *": ctypes.POINTER(ctypes.c_void_p),  # owned string out-param
        "kcheck_record_fields *": ctypes.POINTER(_native.RecordFields),
        "kcheck_record_fields * *": ctypes.POINTER(ctypes.c_void_p),
        "uint8_t * *": ctypes.POINTER(ctypes.c_void_p),  # borrowed buffer out-param
        "kcheck_log_callback": _native.LOG_CALLBACK,
        "kcheck_event_callback": _native.EVENT_CALLBACK,
        "kcheck_pipeline_transform": _native.PIPELINE_TRANSFORM,
        "kcheck_pipeline_keep_going": _native.PIPELINE_KEEP_GOING,
        "kcheck_pipeline_stats *": ctypes.POINTER(_native.PipelineStats),
        "double": ctypes.c_double,
        "uint8_t *": ctypes.c_char_p,  # byte buffer argument (with its length)
        "uint64_t *": ctypes.POINTER(ctypes.c_uint64),
        "kcheck_record_status *": ctypes.POINTER(ctypes.c_uint32),
    }
    if c_type in simple:
        return simple[c_type]
    if re.fullmatch(r"kcheck_\w+ \* \*", c_type):
        return ctypes.POINTER(ctypes.c_void_p)  # handle out-param
    if re.fullmatch(r"kcheck_\w+ \*", c_type):
        return ctypes.c_void_p  # opaque handle
    raise AssertionError(f"no expectation for C type {c_type!r} (from {declaration!r})")


def test_header_parses_to_the_known_api() -> None:
    functions = header_functions()
    assert len(functions) >= 45, sorted(functions)
    assert "kcheck_consumer_next_batch" in functions
    assert functions["kcheck_consumer_next_batch"][1] == [
        "const kcheck_consumer *consumer",
        "size_t max_records",
        "uint64_t timeout_ms",
        "kcheck_batch **out",
    ]


def test_every_header_function_is_declared_with_its_arity_and_types() -> None:
    functions = header_functions()
    undeclared = sorted(set(functions) - set(_native.FUNCTIONS))
    assert not undeclared, f"functions of kcheck.h not declared in kcheck._native: {undeclared}"
    unknown = sorted(set(_native.FUNCTIONS) - set(functions))
    assert not unknown, f"declared but not in kcheck.h: {unknown}"
    for name, (restype, parameters) in functions.items():
        function = getattr(_native.lib, name)
        assert function.argtypes is not None, name
        assert len(function.argtypes) == len(parameters), (
            f"{name}: kcheck.h has {len(parameters)} parameters, argtypes has {len(function.argtypes)}"
        )
        for declared, parameter in zip(function.argtypes, parameters):
            assert declared == expected_ctype(parameter), f"{name}: {parameter!r} declared as {declared}"
        assert function.restype == expected_ctype(restype), f"{name}: returns {restype!r}, restype {function.restype}"


def test_status_functions_raise_and_next_functions_do_not() -> None:
    functions = header_functions()
    for name, (restype, _) in functions.items():
        has_errcheck = getattr(_native.lib, name).errcheck is not None
        if restype == "kcheck_status" and name not in ("kcheck_consumer_next", "kcheck_consumer_next_batch"):
            assert has_errcheck, name
        else:
            assert not has_errcheck, name


def test_record_fields_struct_matches_the_header() -> None:
    match = re.search(r"typedef struct \{(.*?)\} kcheck_record_fields;", _header_text(), re.DOTALL)
    assert match
    names = re.findall(r"(\w+);", match.group(1))
    assert names == [name for name, _ in _native.RecordFields._fields_]
    assert _native.RECORD_FIELDS.size == ctypes.sizeof(_native.RecordFields)
    if sys.maxsize > 2**32:
        assert ctypes.sizeof(_native.RecordFields) == 96


def test_status_codes_match_the_header() -> None:
    codes = dict(re.findall(r"(KCHECK_STATUS_\w+) = (\d+)", _header_text()))
    assert codes, "no status in kcheck.h"
    for name, value in codes.items():
        assert errors.STATUS_NAMES[int(value)] == name
        assert _native.status_name(int(value)) == name
    assert len(errors.STATUS_NAMES) == len(codes)
    assert _native.status_name(999) == "KCHECK_STATUS_UNKNOWN"


def test_versions() -> None:
    text = HEADER.read_text()
    assert f"#define KCHECK_ABI_VERSION {_native.ABI_VERSION}" in text
    version = re.search(r'#define KCHECK_VERSION "([^"]+)"', text)
    assert version and kcheck.library_version() == version.group(1) == kcheck.__version__
    assert _native.lib.kcheck_abi_version() == 1


def _import_in_child(env_library: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import kcheck"],
        cwd=str(PACKAGE_DIR),
        env={"KCHECK_LIBRARY": env_library, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_missing_library_is_an_import_error_naming_the_path(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "libkcheck.so"
    result = _import_in_child(str(missing))
    assert result.returncode != 0
    assert "ImportError" in result.stderr and str(missing) in result.stderr


def test_a_library_that_is_not_kcheck_is_refused() -> None:
    libc_path = next(
        (
            p
            for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib/libc.so.6")
            if os.path.exists(p)
        ),
        None,
    )
    if libc_path is None:
        pytest.skip("no libc.so.6 to load")
        return
    result = _import_in_child(libc_path)
    assert result.returncode != 0
    assert "not a kcheck library" in result.stderr and libc_path in result.stderr


def test_library_candidates_order(monkeypatch) -> None:
    monkeypatch.delenv("KCHECK_LIBRARY", raising=False)
    candidates = _native.library_candidates()
    assert candidates[0] == PACKAGE_DIR / "kcheck" / "libkcheck.so"
    assert candidates[1:] == [REPO / "target/release/libkcheck.so", REPO / "target/debug/libkcheck.so"]
    monkeypatch.setenv("KCHECK_LIBRARY", "/some/where/libkcheck.so")
    assert [str(c) for c in _native.library_candidates()] == ["/some/where/libkcheck.so"]
