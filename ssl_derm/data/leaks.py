"""Leak checks: no validation or test image may reach pretraining or training,
under any name.  Images are compared by content (``identity.find_copies``:
identical files, and re-encoded or resized copies), never by file name.

Every checkpoint carries ``seen_images``: the fingerprints of every image
that shaped its weights (pretraining pools, fine-tuning training splits,
inherited along the ``--init`` chain).  The commands refuse, with exit code 2,
to fine-tune, benchmark or evaluate on a validation or test image that is in
that record, and pretraining drops archive files that copy one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_derm.data.identity import ContentIds, describe_copies, find_copies
from ssl_derm.data.labeled import LabeledData
from ssl_derm.errors import UserError

HELDOUT = ("val", "test")


def heldout_ids(lab: LabeledData) -> ContentIds:
    """Fingerprints of the validation and test images of ``lab``."""
    return lab.bank.ids(np.concatenate([lab.indices(s) for s in HELDOUT]))


def check_split_by_content(lab: LabeledData) -> None:
    """Refuse a split whose training images copy its validation or test images
    (the same picture under two names and two groups)."""
    train, held = lab.bank.ids(lab.indices("train")), heldout_ids(lab)
    copies = find_copies(train, held)
    if copies:
        raise UserError(
            f"{len(copies)} training image(s) are copies of validation/test images of the same source "
            f"({describe_copies(copies, train, held)}); give each copy the group of its original "
            "so the split keeps them together"
        )


def check_unseen(seen: ContentIds, lab: LabeledData, what: str, hint: str) -> None:
    """Refuse when any validation or test image of ``lab`` is among the images ``what`` saw."""
    check_unseen_ids(seen, heldout_ids(lab), what, hint)


def check_unseen_ids(seen: ContentIds, held: ContentIds, what: str, hint: str, kind: str = "validation/test") -> None:
    copies = find_copies(held, seen)
    if copies:
        raise UserError(
            f"{len(copies)} of the {len(held):,} {kind} images were used to train {what} "
            f"({describe_copies(copies, held, seen)}); {hint}"
        )


def drop_copies(pool: ContentIds, held: ContentIds) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Boolean mask of the ``pool`` images to keep (those that copy no ``held`` image) and the copies."""
    copies = find_copies(pool, held)
    keep = np.ones(len(pool), bool)
    keep[[i for i, _, _ in copies]] = False
    return keep, copies


def write_duplicates(out: Path, rows: list[tuple[str, str, float]], dropped_of: dict[str, tuple[int, int]]) -> None:
    """``OUT/duplicates.txt`` (pool file, the labelled image it copies, similarity) and one
    stderr line per archive that lost files."""
    import sys

    if not rows:
        return
    path = out / "duplicates.txt"
    path.write_text("".join(f"{pool}\t{Path(orig).name}\t{sim:.4f}\n" for pool, orig, sim in rows))
    for label, (dropped, total) in dropped_of.items():
        if dropped:
            print(
                f"dropped {dropped:,} of {total:,} archive files from {Path(label).name}: copies of "
                f"validation/test images (list: {path})",
                file=sys.stderr,
            )
