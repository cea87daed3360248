"""The OCI engine's per-run files live on a tmpfs, in a directory only we can use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bgcompiler.errors import StartupError
from bgcompiler.sandbox.oci.volatile import make_volatile_dir, remove_if_empty, volatile_dir


def test_each_state_directory_has_its_own_volatile_directory(tmp_path: Path) -> None:
    """Under the tmpfs, named by the state directory's path; without one, the state
    directory itself serves."""
    shm = tmp_path / "shm"
    shm.mkdir()
    first = volatile_dir(tmp_path / "a", shm)
    assert first.parent == shm
    assert first == volatile_dir(tmp_path / "a", shm)
    assert first != volatile_dir(tmp_path / "b", shm)
    assert volatile_dir(tmp_path / "a", tmp_path / "none") == tmp_path / "a" / "oci"


def test_the_directory_is_made_private_and_a_foreign_one_is_refused(tmp_path: Path) -> None:
    """Made with mode 0700; a link, a file or a directory open to others in its place
    stops the start (/dev/shm is writable by every user)."""
    mine = tmp_path / "mine"
    make_volatile_dir(mine)
    assert mine.stat().st_mode & 0o777 == 0o700
    make_volatile_dir(mine)  # found again: ours
    link = tmp_path / "link"
    link.symlink_to(mine)
    with pytest.raises(StartupError, match="not a directory of ours"):
        make_volatile_dir(link)
    (tmp_path / "file").write_text("")
    with pytest.raises(StartupError, match="not a directory of ours"):
        make_volatile_dir(tmp_path / "file")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(StartupError, match="open to other users"):
        make_volatile_dir(shared)


def test_it_is_removed_when_nothing_is_left_in_it(tmp_path: Path) -> None:
    """Empty directories go; a file (another instance's run) keeps it."""
    volatile = tmp_path / "v"
    (volatile / "runc").mkdir(parents=True)
    (volatile / "runs" / "other").mkdir(parents=True)
    (volatile / "runs" / "other" / "config.json").write_text("{}")
    remove_if_empty(volatile)
    assert (volatile / "runs" / "other" / "config.json").exists()
    assert not (volatile / "runc").exists()
    (volatile / "runs" / "other" / "config.json").unlink()
    remove_if_empty(volatile)
    assert not volatile.exists()
