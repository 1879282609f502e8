"""The output folder check: created if missing, refused with a reason, shared safely."""

from __future__ import annotations

from pathlib import Path

import pytest

from downloader.app import prepare_out_dir
from downloader.errors import ConfigError


def test_creates_a_missing_folder_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    assert prepare_out_dir(out) == out.resolve()
    assert out.is_dir() and list(out.iterdir()) == []


def test_the_write_probe_is_not_a_fixed_name(tmp_path: Path) -> None:
    """Hosts sharing one output folder start together: a probe file with a fixed name was
    created by one and removed by another ("not writable: No such file or directory")."""
    (tmp_path / ".recall-dl-write-test").mkdir()  # whatever sits at the old fixed name
    assert prepare_out_dir(tmp_path) == tmp_path.resolve()
    assert [p.name for p in tmp_path.iterdir()] == [".recall-dl-write-test"]


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_text("x")
    with pytest.raises(ConfigError, match="cannot create output folder"):
        prepare_out_dir(target)
