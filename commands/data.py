"""``ssl-derm data inspect`` and ``ssl-derm data split``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from ssl_derm.data.archives import FileList, ImageSource, open_unlabeled
from ssl_derm.data.sources import is_labeled, load_labeled
from ssl_derm.data.splits import make_splits, write_splits
from ssl_derm.engine import run_dir
from ssl_derm.errors import UserError


def find_unreadable(source: ImageSource, progress: bool = True) -> list[tuple[str, str]]:
    """Fully decode every member at a tiny draft size; return (name, reason) of failures."""
    bad = []
    for name, data in tqdm(
        source.iter_bytes(), total=len(source), desc="checking images", unit="img", disable=not progress, leave=False
    ):
        try:
            if not data:
                raise ValueError("empty file" if data == b"" else "unreadable member")
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (32, 32))
                im.load()
        except Exception as e:  # any decode failure is the file's, not ours
            bad.append((name, f"{type(e).__name__}: {str(e)[:60]}"))
    return bad


def inspect_command(path: str | None, as_json: bool) -> int:
    from ssl_derm.data.sources import sample_dir

    p = Path(path) if path else sample_dir()
    if not p.exists():
        raise UserError(f"data source not found: {p}")
    if is_labeled(p):
        table = load_labeled(p)
        counts = table["label"].value_counts().sort_index()
        report = {
            "source": str(p),
            "kind": "labeled",
            "images": int(len(table)),
            "classes": {k: int(v) for k, v in counts.items()},
            "groups": int(table["group"].nunique()),
        }
        source: ImageSource = FileList(str(p), list(table["image"]))
    else:
        source = open_unlabeled(p)
        report = {"source": str(p), "kind": "unlabeled", "images": len(source), "classes": {}, "groups": 0}
    bad = find_unreadable(source, progress=not as_json)
    report["unreadable"] = len(bad)
    report["unreadable_files"] = [n for n, _ in bad[:50]]
    if as_json:
        print(json.dumps(report))
        return 0
    print(f"{report['source']} ({report['kind']})")
    print(f"  images:     {report['images']:,}")
    if report["classes"]:
        print(f"  groups:     {report['groups']:,} (lesions / patients)")
        width = max(len(k) for k in report["classes"])
        for k, v in sorted(report["classes"].items(), key=lambda kv: -kv[1]):
            print(f"  {k:<{width}}  {v:6,}  {100 * v / report['images']:5.1f}%")
    print(f"  unreadable: {len(bad)}" + "".join(f"\n    {n}  ({why})" for n, why in bad[:10]))
    return 0


def split_command(path: str | None, out: str, seed: int, fractions: str, overwrite: bool) -> int:
    try:
        fr = tuple(float(f) for f in fractions.split(","))
    except ValueError:
        raise UserError(f"--fractions {fractions!r}: expected three numbers like 0.7,0.15,0.15") from None
    if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6 or min(fr) < 0:
        raise UserError(f"--fractions {fractions!r}: need three non-negative fractions summing to 1")
    table = make_splits(load_labeled(path), fr, seed)
    folder = run_dir(out, "split", overwrite=overwrite)
    written = write_splits(table, folder)
    summary = table.groupby("split").agg(images=("image", "size"), groups=("group", "nunique"))
    print(summary.to_string())
    print(f"wrote {written}")
    return 0
