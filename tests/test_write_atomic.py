"""Outputs are written whole or not at all, and only what the user named is changed: a link's
target is replaced (the link stays), a pipe or device is written straight (renaming a file over
/dev/null as root would replace the device)."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from nnspec.backends.commands import write_atomic
from nnspec.cli import UsageError


def test_a_new_file_is_whole_and_no_temporary_is_left(tmp_path):
    out = tmp_path / "a.svg"
    write_atomic(str(out), b"<svg/>")
    assert out.read_bytes() == b"<svg/>"
    assert os.listdir(tmp_path) == ["a.svg"]


def test_a_link_keeps_being_a_link_and_its_target_is_written(tmp_path):
    target = tmp_path / "real.svg"
    target.write_bytes(b"old")
    link = tmp_path / "link.svg"
    link.symlink_to(target)
    write_atomic(str(link), b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_written_straight_not_replaced(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_atomic(str(fifo), b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["out.fifo"]


def test_an_unwritable_folder_is_one_usage_error_naming_the_path_given(tmp_path):
    with pytest.raises(UsageError, match="cannot write 'nowhere/x.svg'"):
        write_atomic("nowhere/x.svg", b"x")
