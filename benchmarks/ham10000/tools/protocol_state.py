#!/usr/bin/env python
"""Keep a long benchmark's progress in the repository, so it resumes on another machine.

A CPU profile of the HAM10000 protocol takes longer than one working session, and a
session's run folder does not outlive it. What a later session needs to go on is small:
the split, each pretraining run's settings and wall time, the screening tables, and each
fine-tuning run's metrics.json, test predictions and config. Checkpoints, TensorBoard
logs and caches are left behind (pretraining is deterministic on a CPU with a fixed seed and
a fixed number of torch threads, 1 and 2 threads giving different weights; so a checkpoint
that is needed again is pretrained again and its encoder is checked against the recorded
fingerprint; a fine-tuning run with metrics.json is never rerun).

    python benchmarks/ham10000/tools/protocol_state.py save OUT STATE      # after a chunk: then commit STATE
    python benchmarks/ham10000/tools/protocol_state.py restore STATE OUT   # before the next one
    python benchmarks/ham10000/tools/protocol_state.py save OUT STATE --with-summaries   # once every run is in

``save`` leaves out the benchmark's summary tables and plots (``benchmark/results.md``,
``paired.csv``, ``intervals.csv``, ``tta.csv``, ``cam_in_lesion.csv``, the confusion matrices,
the label-efficiency plot, the verdict): they are test figures, and a protocol still running
should not commit test figures that a later decision could be made in view of. They are
derived from the runs' files, so the last chunk writes them again; ``--with-summaries`` keeps
them then.

``save`` copies every kept file of OUT that is new or changed into STATE; ``restore``
copies every file of STATE that OUT lacks (nothing in OUT is overwritten). Tables and
JSON files above 100 kB are kept gzipped. Symbolic links (and what lies under them) and files above 2 MB
are never copied.

Paths: the state holds no absolute path of the machine that wrote it. ``save`` writes a path
inside the repository relative to it (``runs/x``) and one beside it relative to it too
(``../shared/data/ham10000/images/x.jpg``); ``restore`` (and ``expand``, for one file such as the
split) turns the latter back into this machine's absolute path, so that a restored run folder
names its images as a run here would, and every key computed from those names still holds.

    python benchmarks/ham10000/tools/protocol_state.py expand STATE/split/splits.csv.gz split.csv
"""

from __future__ import annotations

import argparse
import filecmp
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

KEEP_NAMES = {"DONE", "FAILED", "wall_s", "wall.log", "encoder_sha256"}  # FAILED: a diverged selection point
KEEP_SUFFIXES = {".json", ".csv", ".md", ".yaml", ".png", ".txt"}
SKIP_DIRS = {"tensorboard", "checkpoints", "cache", "masks", "__pycache__"}
# the benchmark folder's test summaries (see the module's docstring), by name prefix
SUMMARY_PREFIXES = (
    "results.",
    "paired.",
    "intervals.",
    "tta.",
    "cam_in_lesion.",
    "confusion_",
    "label_efficiency.",
    "verdict.",
)
MAX_BYTES = 2_000_000
REPO = Path(__file__).resolve().parents[3]
TEXT_SUFFIXES = {".json", ".csv", ".md", ".yaml", ".txt", ".log"}
_START = rb"(?<![\w.+/-])"  # a path starts a field: after a quote, comma, space or line start
GZIP_ABOVE = 100_000  # bytes: split and prediction tables, per-image metrics, are kept gzipped


def kept(root: Path, gz: bool = False) -> list[Path]:
    """Relative paths of the files worth keeping under ``root`` (and of their gzipped
    tables, ``gz``, in a state folder). Never a link, or a file under a linked folder."""
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_symlink() or not path.is_file() or SKIP_DIRS & set(rel.parts[:-1]):
            continue
        if any((root / Path(*rel.parts[:i])).is_symlink() for i in range(1, len(rel.parts))):
            continue
        name = path.name[:-3] if gz and path.name.endswith((".csv.gz", ".json.gz")) else path.name
        if (name in KEEP_NAMES or Path(name).suffix in KEEP_SUFFIXES) and path.stat().st_size <= MAX_BYTES:
            files.append(rel)
    return files


def portable(data: bytes, repo: Path = REPO) -> bytes:
    """``data`` with this machine's absolute paths made relative to the repository: inside it
    ``runs/x``, beside it ``../shared/x``."""
    for prefix, to in ((f"{repo}/", b""), (f"{repo.parent}/", b"../")):
        data = re.sub(_START + re.escape(prefix.encode()), to, data)
    return data


def machine(data: bytes, repo: Path = REPO) -> bytes:
    """``portable`` undone for paths beside the repository (``../shared/x`` -> this machine's
    absolute path); paths inside it stay relative to it."""
    return re.sub(_START + rb"\.\./", f"{repo.parent}/".encode(), data)


def _is_text(name: str) -> bool:
    name = name[:-3] if name.endswith(".gz") else name
    return Path(name).suffix in TEXT_SUFFIXES or name in KEEP_NAMES


def _gzip(src: Path, dst: Path, data: bytes | None = None) -> None:
    """Deterministic (no name, no time stamp): the same table gives the same bytes, and git
    stores the split files that many runs share once. ``data``: the bytes to write instead of
    ``src``'s."""
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as z:
        z.write(data if data is not None else src.read_bytes())


def is_summary(rel: Path, out: Path | None = None) -> bool:
    """A test summary of a benchmark folder (``benchmark/results.md`` and the like), not a run's
    own file: a summary name in ``benchmark/``, or in any folder of ``out`` that is a benchmark
    folder itself (it holds ``runs/`` and ``config.yaml``: ``OUT`` given as the benchmark's own
    ``--out``)."""
    if not rel.name.startswith(SUMMARY_PREFIXES):
        return False
    if rel.parent == Path("benchmark"):
        return True
    folder = out / rel.parent if out is not None else None
    return folder is not None and (folder / "runs").is_dir() and (folder / "config.yaml").is_file()


def save(out: Path, state: Path, summaries: bool = False) -> int:
    """Copy what ``kept`` lists from ``out`` to ``state``, the test summaries only with
    ``summaries`` (``is_summary``); each file is written beside its
    place under a name of its own and renamed into it, so the state folder never holds a
    half-written file (it may be committed while a save runs, and saves may overlap). A
    JSON file that does not parse (caught mid-write) waits for the next save."""
    n = 0
    for rel in kept(out):
        if is_summary(rel, out) and not summaries:
            continue
        src, dst = out / rel, state / rel
        gz = rel.suffix in (".csv", ".json") and src.stat().st_size > GZIP_ABOVE
        data = portable(src.read_bytes()) if _is_text(rel.name) else None
        if gz:
            dst = dst.with_name(dst.name + ".gz")
            if dst.exists() and gzip.decompress(dst.read_bytes()) == (data if data is not None else src.read_bytes()):
                continue
        elif dst.exists() and (dst.read_bytes() == data if data is not None else filecmp.cmp(src, dst, shallow=False)):
            continue
        if rel.suffix == ".json" and not _whole_json(src):
            continue  # being written: the next save takes it
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
        os.close(fd)  # a name of its own: two saves at once never share one
        if gz:
            _gzip(src, Path(part), data)
        elif data is not None:
            Path(part).write_bytes(data)
            shutil.copystat(src, part)
        else:
            shutil.copy2(src, part)
        os.replace(part, dst)
        n += 1
    return n


def _other_run(state: Path, out: Path, rel: Path) -> bool:
    """``rel`` is a run's test output (``test_*``) and the same folder in ``out`` holds a finished
    run other than the state's (its metrics.json differs): a run of this study where the state is
    an earlier benchmark's, say. Its outputs must be its own, written from its own model."""
    mine = out / rel.parent / "metrics.json"
    if not rel.name.startswith("test_") or not mine.is_file():
        return False
    theirs = state / rel.parent / "metrics.json"
    if not theirs.is_file():
        theirs = theirs.with_name("metrics.json.gz")
    if not theirs.is_file():
        return False  # nothing to tell them apart by (a state may leave out a copy of v2's metrics)
    data = gzip.decompress(theirs.read_bytes()) if theirs.suffix == ".gz" else theirs.read_bytes()
    return portable(mine.read_bytes()) != data  # compared as saved: machine() does not undo every path


def _whole_json(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
        return True
    except ValueError:
        return False


def restore(state: Path, out: Path) -> int:
    """The state's files into ``out``, never over a file there, and never a run's test outputs
    into a folder that holds another run (``_other_run``)."""
    n = 0
    for rel in kept(state, gz=True):
        src, dst = state / rel, out / rel
        if rel.suffix == ".gz":
            dst = dst.with_suffix("")
        if dst.exists() or _other_run(state, out, rel):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        expand(src, dst)
        n += 1
    return n


def expand(src: Path, dst: Path) -> None:
    """One state file to ``dst`` as this machine uses it: gunzipped, paths beside the
    repository absolute again (``machine``)."""
    data = gzip.decompress(src.read_bytes()) if src.suffix == ".gz" else src.read_bytes()
    if _is_text(src.name):
        dst.write_bytes(machine(data))
        shutil.copystat(src, dst)
    elif src.suffix == ".gz":
        dst.write_bytes(data)
    else:
        shutil.copy2(src, dst)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["save", "restore", "expand"])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument(
        "--with-summaries",
        action="store_true",
        help="save: keep the benchmark's test summaries too (once every run is in)",
    )
    args = ap.parse_args(argv)
    if args.action == "expand":
        expand(args.src, args.dst)
        return 0
    if not args.src.is_dir():
        if args.action == "restore":
            return 0  # nothing kept yet: a first run
        print(f"protocol_state: {args.src} is not a folder", file=sys.stderr)
        return 2
    n = save(args.src, args.dst, args.with_summaries) if args.action == "save" else restore(args.src, args.dst)
    print(f"protocol_state {args.action}: {n} file(s) {args.src} -> {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
