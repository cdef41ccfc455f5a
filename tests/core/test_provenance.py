"""One implementation of hashing, JSON writing and provenance records for every tool."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nnunet_babloss.core.provenance import (
    VERSIONED_PACKAGES,
    JsonFileError,
    file_sha256,
    jsonable,
    package_version,
    provenance_record,
    read_json,
    read_json_object,
    write_json,
)


def test_file_sha256_matches_hashlib_across_block_boundaries(tmp_path: Path) -> None:
    content = bytes(range(256)) * 8193  # just over 2 MiB: three 1 MiB blocks
    path = tmp_path / "blob.bin"
    path.write_bytes(content)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.bin")


def test_jsonable_is_strict_json_and_stable() -> None:
    value = {"path": Path("/a/b"), "set": {3, 1, 2}, "tuple": (1, 2), "nan": math.nan, "inf": np.float32(np.inf),
             "numpy": np.int64(4), 5: np.float64(0.5), "object": object}
    result = jsonable(value)
    assert result["path"] == "/a/b" and result["set"] == [1, 2, 3] and result["tuple"] == [1, 2]
    assert result["nan"] is None and result["inf"] is None and result["numpy"] == 4 and result["5"] == 0.5
    assert isinstance(result["object"], str)
    json.dumps(result, allow_nan=False)  # strict JSON


@pytest.mark.parametrize("atomic", [False, True])
def test_write_json_round_trips_and_refuses_nan(tmp_path: Path, atomic: bool) -> None:
    path = tmp_path / "out.json"
    write_json(path, {"name": "Ünïcode", "values": [1, 2.5]}, atomic=atomic)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "Ünïcode" in text
    assert json.loads(text) == {"name": "Ünïcode", "values": [1, 2.5]}
    assert sorted(item.name for item in tmp_path.iterdir()) == ["out.json"]  # no staging file left behind
    with pytest.raises(ValueError):
        write_json(path, {"bad": math.nan}, atomic=atomic)


def test_every_record_has_the_same_head() -> None:
    record = provenance_record("tool_x", arguments={"seed": 1, "folder": Path("/x")}, extra_packages=("no-such-dist",),
                               cases=("a", "b"))
    assert list(record)[:3] == ["tool", "created_utc", "versions"]
    assert record["tool"] == "tool_x" and record["arguments"] == {"seed": 1, "folder": "/x"}
    assert record["cases"] == ["a", "b"] and record["created_utc"].endswith("+00:00")
    assert set(VERSIONED_PACKAGES) | {"python", "no-such-dist"} == set(record["versions"])
    assert record["versions"]["no-such-dist"] is None and package_version("no-such-dist") is None
    assert "arguments" not in provenance_record("tool_y")


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("nnunet_babloss.core.provenance", ("numpy", "SimpleITK", "torch", "nnunetv2")),
        ("nnunet_babloss.trainer_names", ("numpy", "torch", "nnunetv2")),
        ("nnunet_babloss.core.rasterise", ("torch", "SimpleITK", "nnunetv2")),
    ],
)
def test_small_shared_modules_stay_light(module: str, forbidden: tuple[str, ...]) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(sorted(n for n in sys.modules if n.split('.')[0] in {forbidden!r})))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "", f"{module} pulls in {completed.stdout.strip()}"


def test_read_json_names_what_and_where_for_every_bad_file(tmp_path: Path) -> None:
    """One reader for every user-given JSON file: a missing file, invalid JSON, non-UTF-8 bytes (which used to
    escape as a bare UnicodeDecodeError from some readers) and a non-object all give messages with the path."""
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json(good) == {"a": [1, 2]} and read_json_object(good, "--x") == {"a": [1, 2]}
    with pytest.raises(FileNotFoundError, match=r"--labels-json .*missing\.json: file not found"):
        read_json(tmp_path / "missing.json", "--labels-json")
    broken = tmp_path / "broken.json"
    broken.write_text("{oops", encoding="utf-8")
    with pytest.raises(JsonFileError, match=r"broken\.json: not valid JSON") as caught:
        read_json(broken)
    assert caught.value.reason.startswith("not valid JSON") and caught.value.path == broken
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"name": "Gr\u00f6\u00dfe"}'.encode("latin-1"))
    with pytest.raises(JsonFileError, match=r"-djfile .*latin\.json: not valid JSON"):
        read_json(latin, "-djfile")
    array = tmp_path / "array.json"
    array.write_text("[1]", encoding="utf-8")
    assert read_json(array) == [1]
    with pytest.raises(JsonFileError, match=r"array\.json: must hold a JSON object, got list"):
        read_json_object(array)
    assert isinstance(caught.value, ValueError)  # what the command-line tools report without a traceback
