"""``ssl-derm explain``: class activation maps of a fine-tuned model (pytorch-grad-cam).

Every image of each SOURCE is decoded through the cache and scored once; the maps
are then computed, in batches, for the ``--n`` images picked: with labels, the
wrong predictions first, the most confident mistake first (by the probability the
model gave to its wrong answer), then the others in source order.

The maps are taken on the encoder's last stage (``cam_layer``), whose feature map
is 1/32 of the input (2x2 at 64 px, 4x4 at 128 px), upsampled to the image.
pytorch-grad-cam keeps the positive part of each map and rescales it to [0, 1] per
image; EigenCAM explains no class (the first principal component of the
activations), the others the ``--target`` class.

Lesion masks (HAM10000's ``masks/<image_id>_segmentation.png``, 0 = skin, 255 =
lesion) are cropped exactly as the image was (``fit_mask``) and give, per image,

* ``cam_in_lesion`` = sum(cam * mask) / sum(cam): the share of the map's mass inside
  the lesion,
* ``lesion_area``: the lesion's share of the image, the value a uniform map (chance)
  would get; a model that looks at the lesion scores well above it, and
* ``centre_in_lesion``: the value of a fixed map peaked at the image centre
  (``centre_map``), since dermoscopy centres the lesion: looking at the lesion means
  beating this too, not only the area.

Writes into OUT only: ``images/<rank>_<stem>.png`` (image | overlay, true and
predicted label with probability), ``grid_<class>.png`` (by true class where known,
else predicted; at most ``GRID_MAX`` tiles, worst first), ``explain.csv``,
``summary.json``, ``skipped.txt`` (unreadable files) and ``tensorboard/``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.cam import METHODS, cam_in_lesion, centre_map, compute_cams, read_mask
from ssl_derm.commands.common import load_model, open_images, require_classifier, write_skipped
from ssl_derm.data import ImagePipeline
from ssl_derm.data.sources import is_labeled, sample_dir
from ssl_derm.engine import default_device, run_dir
from ssl_derm.errors import UserError
from ssl_derm.files import safe_name
from ssl_derm.finetune.classifier import predict_proba

GRID_MAX = 64  # tiles per class grid (and TensorBoard images per class)
GRID_COLUMNS = 8
MASK_SUFFIX = "_segmentation.png"


# ---------------------------------------------------------------- maps


# ---------------------------------------------------------------- helpers


def order_worst_first(probs: np.ndarray, true_idx: np.ndarray) -> np.ndarray:
    """Indices: wrong predictions (``true_idx >= 0`` and argmax differs) by decreasing
    probability of the predicted class, then every other image in its original order."""
    pred = probs.argmax(1)
    conf = probs[np.arange(len(probs)), pred]
    wrong = np.flatnonzero((true_idx >= 0) & (pred != true_idx))
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    rest = np.setdiff1d(np.arange(len(probs)), wrong, assume_unique=True)
    return np.concatenate([wrong, rest]).astype(int)


def _mask_folders(data: list[str] | None, masks: str | None) -> list[Path | None]:
    """The mask folder of each source: ``--masks``, else ``SOURCE/masks`` when it exists."""
    specs = data or [None]
    if masks is not None:
        folder = Path(masks)
        if not folder.is_dir():
            raise UserError(f"--masks {masks}: no such folder")
        return [folder] * len(specs)
    out = []
    for spec in specs:
        root = sample_dir() if spec is None else Path(spec)
        out.append(root / "masks" if root.is_dir() and (root / "masks").is_dir() else None)
    return out


def _inside(name: str, folders: list[Path | None]) -> bool:
    """Whether file ``name`` lies in one of the mask ``folders``."""
    path = Path(name)
    if not path.is_absolute():
        return False
    for folder in folders:
        if folder is not None and folder.resolve() in path.parents:
            return True
    return False


def _load_mask(folder: Path | None, name: str, size: int, resize: str) -> np.ndarray | None:
    if folder is None:
        return None
    path = folder / f"{Path(name).stem}{MASK_SUFFIX}"
    return read_mask(path, name, size, resize) if path.is_file() else None


def _require_labeled(data: list[str] | None, option: str, hint: str) -> None:
    """One line naming the first ``--data`` source that has no labels, for ``option``."""
    for spec in data or [None]:
        path = sample_dir() if spec is None else Path(spec)
        if not (path.exists() and is_labeled(path)):
            raise UserError(
                f"{option}: --data {spec} is not a labelled source (HAM10000 folder, CSV, ImageFolder); {hint}"
            )


def _check_split(data: list[str] | None, split: str, ckpt: dict) -> set[str] | None:
    if split == "all":
        return None
    _require_labeled(data, f"--split {split}", "use --split all")
    recorded = (ckpt.get("split_images") or {}).get(split)
    if not recorded:
        raise UserError(f"--split {split}: {split} images are not recorded in this checkpoint; use --split all")
    return set(recorded["sha1"])


def _check_target(target: str, classes: list[str]) -> None:
    if target in ("predicted", "true") or target in classes:
        return
    raise UserError(f"--target {target}: use predicted, true or a class of this model ({', '.join(classes)})")


def _rows_in(sha1s: set[str], split: str):
    """``rows`` for ``open_images``: the table rows whose file content is in ``sha1s`` (the
    images of ``split`` recorded in model.ckpt: matched by content, not by file name)."""
    from ssl_derm.data.identity import file_sha1

    def pick(table: pd.DataFrame) -> pd.DataFrame:
        keep = []
        for p in table["image"]:
            try:
                keep.append(file_sha1(Path(p).read_bytes()) in sha1s)
            except OSError:
                keep.append(False)
        if not any(keep):
            raise UserError(
                f"--split {split}: none of the {len(sha1s):,} {split} images this model was trained with are in "
                "--data; use --split all"
            )
        return table[np.array(keep, dtype=bool)]

    return pick


def _mean(values) -> float | None:
    values = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    return round(float(values.mean()), 4) if len(values) else None


def _lesion_stats(table: pd.DataFrame) -> dict:
    masked = table.dropna(subset=["lesion_area"])
    return {
        "n": int(len(table)),
        "masked": int(len(masked)),
        "cam_in_lesion": _mean(masked["cam_in_lesion"]),
        "lesion_area": _mean(masked["lesion_area"]),
        "centre_in_lesion": _mean(masked["centre_in_lesion"]),
    }


# ---------------------------------------------------------------- figures


def _overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """uint8 HWC: the heat map over the image (JET, half and half)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True, image_weight=0.5)


def _title(row: dict) -> str:
    true = f"true {row['true_label']} · " if isinstance(row["true_label"], str) else ""
    return f"{true}predicted {row['predicted_label']} ({row['probability']:.2f})"


class _Panels:
    """One reused figure (image | overlay) written once per image: building a matplotlib
    figure per image cost 0.2 s, most of it layout."""

    def __init__(self, method: str) -> None:
        from matplotlib.figure import Figure

        self.method = method
        self.fig = Figure(figsize=(6.4, 3.8), dpi=100)
        self.axes = self.fig.subplots(1, 2, gridspec_kw={"left": 0.02, "right": 0.98, "bottom": 0.02, "top": 0.8})
        self.shown = [None, None]
        self.contour = None
        for ax in self.axes:
            ax.set_axis_off()
        self.axes[0].set_title("image", fontsize=9)
        self.suptitle = self.fig.suptitle("", fontsize=10)

    def write(self, path: Path, image: np.ndarray, overlay: np.ndarray, mask: np.ndarray | None, row: dict) -> None:
        a, b = self.axes
        for k, (ax, pixels) in enumerate(zip(self.axes, (image, overlay))):
            if self.shown[k] is None or self.shown[k].get_array().shape != pixels.shape:
                if self.shown[k] is not None:
                    self.shown[k].remove()
                self.shown[k] = ax.imshow(pixels)
            else:
                self.shown[k].set_data(pixels)
        if self.contour is not None:
            self.contour.remove()
            self.contour = None
        sub = f"{self.method}, class {row['target_class']}"
        if mask is not None:
            if mask.any() and not mask.all():
                self.contour = b.contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
            sub += f"\nin lesion {row['cam_in_lesion']:.2f} (lesion area {row['lesion_area']:.2f})"
        b.set_title(sub, fontsize=9)
        self.suptitle.set_text(_title(row))
        self.suptitle.set_color("firebrick" if row["correct"] is False else "black")
        self.fig.savefig(path)


def _grid(path: Path, label: str, overlays: list[np.ndarray], rows: list[dict], heading: str) -> None:
    from matplotlib.figure import Figure

    cols = min(GRID_COLUMNS, len(overlays))
    lines = math.ceil(len(overlays) / cols)
    height = 1.9 * lines + 0.5
    fig = Figure(figsize=(1.7 * cols, height), dpi=100)
    space = {"left": 0.01, "right": 0.99, "bottom": 0.01, "top": 1 - 0.5 / height, "wspace": 0.05, "hspace": 0.2}
    axes = np.atleast_1d(fig.subplots(lines, cols, gridspec_kw=space)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, ov, row in zip(axes, overlays, rows):
        ax.imshow(ov)
        wrong = row["correct"] is False
        ax.set_title(
            f"→{row['predicted_label']} {row['probability']:.2f}", fontsize=7, color="firebrick" if wrong else "black"
        )
    fig.suptitle(f"{label} ({heading}): {len(overlays)} image(s)", fontsize=10)
    fig.savefig(path)


def _tensorboard(folder: Path, groups: dict[str, list[np.ndarray]], summary: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    try:
        for label, overlays in groups.items():
            writer.add_images(f"explain/{label}", np.stack(overlays), 0, dataformats="NHWC")
        writer.add_text("explain/summary", "```\n" + json.dumps(summary, indent=2) + "\n```", 0)
    finally:
        writer.close()


# ---------------------------------------------------------------- command


def run_explain(
    checkpoint: str,
    data: list[str] | None,
    out: str | None,
    n: int = 16,
    target: str = "predicted",
    method: str = "gradcam",
    split: str = "all",
    masks: str | None = None,
    overwrite: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    if n < 0:
        raise UserError(f"--n {n}: use a count >= 1, or 0 for every image")
    if method not in METHODS:
        raise UserError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if out and Path(out).is_dir() and any(Path(out).iterdir()) and not overwrite:
        run_dir(out, "explain", overwrite)  # refuses at once, before any decoding
    loaded = load_model(checkpoint)
    require_classifier(loaded, "explain")
    classes = list(loaded.classes)
    _check_target(target, classes)
    if target == "true":
        _require_labeled(data, "--target true", "use --target predicted or a class name")
    sha1s = _check_split(data, split, loaded.ckpt)
    folders = _mask_folders(data, masks)

    images = open_images(
        data,
        loaded.image_size,
        cache_dir=cache_dir,
        progress=progress,
        resize=loaded.resize,
        rows=_rows_in(sha1s, split) if sha1s is not None else None,
    )
    index = {c: i for i, c in enumerate(classes)}
    true_idx = np.array([index.get(label, -1) if label is not None else -1 for label in images.labels])
    if target == "true" and (true_idx < 0).any():
        unknown = sorted({str(label) for label, t in zip(images.labels, true_idx) if t < 0})
        raise UserError(
            f"--target true: label(s) {', '.join(unknown[:5])} of --data are not classes of this model "
            f"({', '.join(classes)})"
        )
    # an unlabelled folder lists every image file below it, its masks/ folder included
    cand = np.array([i for i, name in enumerate(images.names) if not _inside(name, folders)], dtype=int)
    if len(cand) < len(images):
        print(
            f"ssl-derm: note: {len(images) - len(cand)} file(s) of the masks folder are not explained", file=sys.stderr
        )
    if len(cand) == 0:
        raise UserError(f"--data {', '.join(map(str, data or ['sample']))}: no images outside the masks folder")
    folder = run_dir(out, "explain", overwrite)

    dev = default_device()
    pipeline = ImagePipeline(loaded.normalization)
    # with labels every image is scored to find the worst mistakes; without, the first n are taken
    scored = cand if (true_idx[cand] >= 0).any() or n == 0 else cand[:n]
    probs = np.zeros((len(images), len(classes)), dtype=np.float32)
    probs[scored] = predict_proba(loaded.classifier, images.images(scored), pipeline, dev, progress=progress)
    order = scored[order_worst_first(probs[scored], true_idx[scored])]
    picked = order if n == 0 else order[:n]
    pred = probs.argmax(1)
    if target == "predicted":
        targets = pred[picked]
    elif target == "true":
        targets = true_idx[picked]
    else:
        targets = np.full(len(picked), index[target])

    pixels = images.images(picked)
    cams = compute_cams(loaded.classifier, pixels, targets, pipeline, method, dev, progress=progress)
    pixels = pixels.permute(0, 2, 3, 1).numpy()  # uint8 NHWC for figures

    source_of = {str(s if s is not None else "sample"): f for s, f in zip(data or [None], folders)}
    (folder / "images").mkdir()
    width = max(4, len(str(len(picked))))
    rows, overlays, grid_of, group = [], [], {}, []
    panels = _Panels(method)
    centre = centre_map(loaded.image_size)
    from tqdm.auto import tqdm

    for rank, i in enumerate(tqdm(picked, desc="figures", unit="image", disable=not progress, leave=False)):
        name, label = images.names[i], images.labels[i]
        mask = _load_mask(source_of.get(images.sources[i]), name, loaded.image_size, loaded.resize)
        png = f"images/{rank:0{width}d}_{safe_name(Path(name).stem)}.png"
        row = {
            "rank": rank,
            "image": name,
            "source": images.sources[i],
            "true_label": label,
            "predicted_label": classes[pred[i]],
            "probability": float(probs[i, pred[i]]),
            "correct": None if true_idx[i] < 0 else bool(pred[i] == true_idx[i]),
            "target_class": classes[targets[rank]],
            "target_probability": float(probs[i, targets[rank]]),
            "cam_std": float(cams[rank].std()),
            "cam_in_lesion": cam_in_lesion(cams[rank], mask) if mask is not None else None,
            "lesion_area": float(mask.mean()) if mask is not None else None,
            "centre_in_lesion": cam_in_lesion(centre, mask) if mask is not None else None,
            "png": png,
        }
        overlay = _overlay(pixels[rank], cams[rank])
        panels.write(folder / png, pixels[rank], overlay, mask, row)
        rows.append(row)
        overlays.append(overlay)
        group.append(label if true_idx[i] >= 0 else classes[pred[i]])  # true class where known
        grid_of.setdefault(group[-1], []).append(rank)

    table = pd.DataFrame(rows)
    table.to_csv(folder / "explain.csv", index=False)
    write_skipped(folder, images.skipped)

    # one grid (and one TensorBoard image) per class, worst first, GRID_MAX at most
    labeled = bool((true_idx[picked] >= 0).any())
    groups, used = {}, set()
    for label in sorted(grid_of, key=lambda c: (index.get(c, len(classes)), c)):
        ranks = grid_of[label][:GRID_MAX]
        stem = safe_name(label, 40)
        while stem in used:
            stem += "_"
        used.add(stem)
        heading = "true class" if labeled else "predicted class"
        if labeled:
            heading += ", worst mistakes first" if any(rows[r]["correct"] is False for r in ranks) else ""
        _grid(folder / f"grid_{stem}.png", label, [overlays[r] for r in ranks], [rows[r] for r in ranks], heading)
        groups[label] = [overlays[r] for r in ranks]

    key = pd.Series(group, index=table.index)
    summary = {
        "checkpoint": str(checkpoint),
        "method": method,
        "target": target,
        "split": split,
        "layer": "last encoder stage",
        "images": len(cand),
        "n": len(picked),
        "skipped": len(images.skipped),
        "labeled": labeled,
        "wrong": int((table["correct"] == False).sum()),  # noqa: E712 (None stays out)
        "constant_maps": int((table["cam_std"] == 0).sum()),
        "masks": sorted({str(f) for f in folders if f is not None}),
        "cam_in_lesion_note": "sum(cam*mask)/sum(cam) with cam >= 0 rescaled to [0, 1] per image by "
        "pytorch-grad-cam; baselines: lesion_area (lesion pixels / image pixels) is what a uniform map gets, "
        "centre_in_lesion what a fixed Gaussian at the image centre (sigma = size/4) gets",
        "overall": _lesion_stats(table),
        "per_class_by": "true label where known, else predicted label",
        "per_class": {c: _lesion_stats(table[key == c]) for c in sorted(grid_of, key=lambda c: (index.get(c, 99), c))},
        "correct": _lesion_stats(table[table["correct"] == True]),  # noqa: E712
        "wrong_predictions": _lesion_stats(table[table["correct"] == False]),  # noqa: E712
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    _tensorboard(folder / "tensorboard", groups, summary)

    overall = summary["overall"]
    lesion = (
        f"; CAM mass inside the lesion {overall['cam_in_lesion']:.3f} (lesion area {overall['lesion_area']:.3f}, "
        f"{overall['masked']} masked image(s))"
        if overall["cam_in_lesion"] is not None
        else ""
    )
    print(f"explained {len(picked):,} of {len(cand):,} images with {method}{lesion}; wrote {folder}")
    return table
