"""Unlabelled image sources for ``--unlabeled``, picked by the shape of the path.

A folder (searched recursively), a ``.zip``, a ``.tar``/``.tar.gz``/``.tgz``,
a glob pattern, or a ``.txt`` file listing one image path per line.  Members
are read lazily, one at a time, and never extracted to disk.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ssl_derm.errors import UserError

# Files that are clearly not images are not members at all; anything else that
# fails to decode is counted and reported as skipped.
_NOT_IMAGES = {".txt", ".csv", ".json", ".md", ".yaml", ".yml", ".db", ".ds_store", ".ini"}


class ImageSource:
    """An ordered list of image members and a way to read each one's bytes."""

    def __init__(self, label: str, names: list[str]) -> None:
        self.label = label
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def fingerprint(self) -> str:
        """Changes whenever the members or their contents might have changed."""
        raise NotImplementedError

    def iter_bytes(self) -> Iterator[tuple[str, bytes | None]]:
        """Yield ``(name, bytes)`` in order; ``bytes`` is None if unreadable."""
        raise NotImplementedError


class FileList(ImageSource):
    def __init__(self, label: str, paths: list[str]) -> None:
        super().__init__(label, paths)

    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for p in self.names:
            try:
                st = os.stat(p)
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{p}|missing\n".encode())
        return h.hexdigest()

    def iter_bytes(self) -> Iterator[tuple[str, bytes | None]]:
        for p in self.names:
            try:
                yield p, Path(p).read_bytes()
            except OSError:
                yield p, None


class _Archive(ImageSource):
    def __init__(self, path: Path, names: list[str]) -> None:
        super().__init__(str(path), names)
        self.path = path

    def fingerprint(self) -> str:
        st = self.path.stat()
        key = f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{len(self.names)}"
        return hashlib.sha1(key.encode()).hexdigest()


class ZipSource(_Archive):
    def iter_bytes(self) -> Iterator[tuple[str, bytes | None]]:
        with zipfile.ZipFile(self.path) as zf:
            for name in self.names:
                try:
                    yield name, zf.read(name)
                except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError):
                    yield name, None


class TarSource(_Archive):
    def iter_bytes(self) -> Iterator[tuple[str, bytes | None]]:
        wanted = set(self.names)
        with tarfile.open(self.path, mode="r:*") as tf:
            try:
                for member in tf:  # streams: one pass, members in archive order
                    if member.name in wanted:
                        f = tf.extractfile(member)
                        yield member.name, f.read() if f is not None else None
            except (tarfile.TarError, OSError, EOFError):
                return


def _is_member(name: str) -> bool:
    base = os.path.basename(name)
    return bool(base) and not base.startswith(".") and Path(base).suffix.lower() not in _NOT_IMAGES


def open_unlabeled(spec: str | Path) -> ImageSource:
    """Open one ``--unlabeled`` source (see module docstring)."""
    spec = str(spec)
    path = Path(spec)
    lower = spec.lower()
    if any(c in spec for c in "*?[") and not path.exists():
        paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not paths:
            raise UserError(f"--unlabeled {spec}: the pattern matches no files")
        return FileList(spec, [str(Path(p).resolve()) for p in paths if _is_member(p)])
    if not path.exists():
        raise UserError(f"--unlabeled {spec}: no such file or folder")
    if path.is_dir():
        paths = sorted(str(p.resolve()) for p in path.rglob("*") if p.is_file() and _is_member(p.name))
        return FileList(str(path), paths)
    if lower.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir() and _is_member(i.filename)]
        except (zipfile.BadZipFile, OSError) as e:
            raise UserError(f"--unlabeled {spec}: not a readable zip file ({e})") from None
        return ZipSource(path, names)
    if lower.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        try:
            with tarfile.open(path, mode="r:*") as tf:
                names = [m.name for m in tf if m.isfile() and _is_member(m.name)]
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"--unlabeled {spec}: not a readable tar file ({e})") from None
        return TarSource(path, names)
    if lower.endswith(".txt"):
        base = path.resolve().parent
        lines = [ln.strip() for ln in path.read_text().splitlines()]
        paths = [str((base / ln).resolve()) for ln in lines if ln and not ln.startswith("#")]
        return FileList(str(path), paths)
    raise UserError(f"--unlabeled {spec}: unsupported; give a folder, .zip, .tar[.gz], a glob or a .txt list")
