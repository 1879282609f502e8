"""Safe names: nothing from remote data can escape the output folder or collide."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from downloader import naming
from downloader.errors import ConfigError, UnsafePath


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x", "7-x"),
        ("a/b", "7-a-b"),
        ("", "7-unknown"),
        (None, "7-unknown"),
        ("nul\x00here", "7-nul-here"),
        (".hidden", "7-hidden"),
        ("..", "7-unknown"),
        ("Zoë 李小龍", "7-Zoë-李小龍"),
        ("\u202eevil", "7-evil"),
    ],
)
def test_participant_dir(name: str | None, expected: str) -> None:
    assert naming.participant_dir(7, name) == expected


@given(st.text(max_size=400), st.integers(min_value=0, max_value=10**9))
def test_participant_dir_is_one_safe_component(name: str, pid: int) -> None:
    component = naming.participant_dir(pid, name)
    assert "/" not in component and "\x00" not in component and "\\" not in component
    assert component not in (".", "..")
    assert component.startswith(f"{pid}-")
    assert len(component.encode()) <= 255
    assert all(ch.isprintable() for ch in component)


@given(st.text(min_size=1, max_size=200))
def test_safe_id_is_one_component(remote: str) -> None:
    component = naming.safe_id(remote)
    assert "/" not in component and component not in (".", "..") and component
    assert not component.startswith(".")


def test_same_name_different_participants_never_collide() -> None:
    assert naming.participant_dir(1, "Alex") != naming.participant_dir(2, "Alex")


def test_part_names_sort_by_time() -> None:
    names = [naming.part_file_name(t, "webcam", f"p{i}") for i, t in enumerate([120.5, 3.25, 45.0])]
    assert sorted(names) == [names[1], names[2], names[0]]
    assert names[1].startswith("0000003250-webcam-")


def test_unsafe_part_id_is_hashed() -> None:
    unsafe = naming.safe_id("../../etc/passwd")
    assert "/" not in unsafe and ".." not in unsafe.split("-")[0]
    assert naming.safe_id("../../etc/passwd") == unsafe  # stable


def test_ensure_inside(tmp_path: Path) -> None:
    assert naming.ensure_inside(tmp_path, tmp_path / "a" / "b")
    with pytest.raises(UnsafePath):
        naming.ensure_inside(tmp_path, tmp_path / ".." / "x")


def test_bot_id_must_be_a_uuid() -> None:
    assert naming.validate_bot_id(" 8A5F6E0C-1B2D-4C3E-9F00-123456789ABC ") == (
        "8a5f6e0c-1b2d-4c3e-9f00-123456789abc"
    )
    with pytest.raises(ConfigError, match="not a bot id"):
        naming.validate_bot_id("../../etc")
