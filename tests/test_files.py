"""ssl_derm/files.py: atomic writes and safe file names."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_derm.files import atomic_save_npy, atomic_write, atomic_write_text, safe_name


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "record.json"
    atomic_write_text("old", path)

    def crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_npy_keeps_its_name(tmp_path):
    atomic_save_npy(np.arange(6).reshape(2, 3), tmp_path / "a.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
    assert np.load(tmp_path / "a.npy").tolist() == [[0, 1, 2], [3, 4, 5]]


def test_safe_name_never_escapes_the_folder():
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("..") == "_" and safe_name("") == "_"
    assert safe_name("a b/c", limit=3) == "a_b"
    assert safe_name("imagenet+simclr") == "imagenet_simclr"
    assert safe_name("imagenet+simclr", limit=None, extra="+", strip_dots=False) == "imagenet+simclr"
