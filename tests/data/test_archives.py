"""Unlabelled archives: every reader, lazily, and messy content skipped and counted."""

import tarfile
import zipfile

import numpy as np
import pytest

from ssl_derm.data import decode_source, open_unlabeled
from ssl_derm.errors import UserError
from tests.conftest import write_messy_folder


def _expect_messy(decoded):
    assert decoded.ok.sum() == 5
    reasons = dict((n.split("/")[-1], why) for n, why in decoded.skipped)
    assert set(reasons) == {"truncated.jpg", "empty.jpg", "notes.bin"}
    assert reasons["empty.jpg"] == "empty file"
    assert decoded.pixels.shape[1:] == (3, 32, 32)
    assert decoded.pixels[decoded.ok].mean() > 20  # real pixels were written


@pytest.mark.parametrize("kind", ["folder", "zip", "tar.gz", "glob", "txt"])
def test_every_reader_skips_and_counts_bad_members(tmp_path, jpeg_bytes, kind):
    folder = write_messy_folder(tmp_path / "messy", jpeg_bytes)
    files = sorted(folder.iterdir())
    if kind == "folder":
        spec = folder
    elif kind == "zip":
        spec = tmp_path / "a.zip"
        with zipfile.ZipFile(spec, "w") as zf:
            for f in files:
                zf.write(f, f"inner/{f.name}")
    elif kind == "tar.gz":
        spec = tmp_path / "a.tar.gz"
        with tarfile.open(spec, "w:gz") as tf:
            for f in files:
                tf.add(f, f"inner/{f.name}")
    elif kind == "glob":
        spec = str(folder / "*")
    else:
        spec = tmp_path / "list.txt"
        spec.write_text("".join(f"messy/{f.name}\n" for f in files))
    src = open_unlabeled(spec)
    assert len(src) == 8
    with pytest.warns(UserWarning, match="skipped 3 of 8"):
        decoded = decode_source(src, 32, tmp_path / "cache", progress=False)
    _expect_messy(decoded)


def test_decode_cache_is_reused_without_decoding(tmp_path, jpeg_bytes, monkeypatch):
    folder = tmp_path / "good"
    folder.mkdir()
    for i, data in enumerate(jpeg_bytes):
        (folder / f"{i}.jpg").write_bytes(data)
    first = decode_source(open_unlabeled(folder), 32, tmp_path / "cache", progress=False)
    import ssl_derm.data.cache as cache

    def boom(*a, **k):
        raise AssertionError("decoded a second time")

    monkeypatch.setattr(cache, "decode_image", boom)
    second = decode_source(open_unlabeled(folder), 32, tmp_path / "cache", progress=False)
    assert np.array_equal(np.asarray(first.pixels), np.asarray(second.pixels))
    assert isinstance(second.pixels, np.memmap)


def test_missing_unlabeled_path_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        open_unlabeled(tmp_path / "nope.zip")
    with pytest.raises(UserError, match="matches no files"):
        open_unlabeled(str(tmp_path / "*.jpg"))
