"""``ssl-derm embed``: what an encoder learned, as features, a map and two scores.

Pooled encoder features (the global average of the last feature map, as the
classifier sees them) of every image of the labelled ``--data`` and every
``--unlabeled`` source go to ``features.npy`` (float32, L2-normalised rows, in
``embeddings.csv`` order); a 2-D map of them (t-SNE or PCA from scikit-learn,
UMAP from ``umap-learn``) goes to ``embeddings.csv`` and two scatter plots, one
coloured by label and one by source, which shows the domain gap between the
labelled set and each archive; the TensorBoard projector gets the features with
their labels, sources and thumbnails.

With labels, the features are scored the way the pretraining monitor scores
them: kNN (k=20, cosine, class-balanced bank) and a class-balanced logistic
regression, by balanced accuracy in 5-fold cross-validation grouped by lesion
and stratified by class.  Images the checkpoint was trained on are counted in
``summary.json``: a fine-tuned model's features have seen those labels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ssl_derm.commands.common import ImageSet, load_model, open_images, write_skipped
from ssl_derm.data import ImagePipeline
from ssl_derm.engine import default_device, run_dir
from ssl_derm.errors import UserError

KNN_K = 20
FOLDS = 5


def reduce_2d(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """``[N, D]`` -> ``[N, 2]`` by PCA, t-SNE (after PCA to 50 dimensions) or UMAP."""
    from sklearn.decomposition import PCA

    if len(features) < 3:
        raise UserError(f"embed: need at least 3 images for a 2-D map, got {len(features)}")
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(features)
    reduced = PCA(min(50, *features.shape), random_state=seed).fit_transform(features)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, (len(features) - 1) / 3))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise UserError('--method umap needs umap-learn: pip install "ssl-derm[umap]"') from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(reduced)
    raise UserError(f"--method {method!r}: choose tsne, umap or pca")


def cross_validated_scores(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> dict:
    """kNN and linear-probe balanced accuracy over ``FOLDS`` lesion-grouped, stratified folds
    (fewer when a class has fewer lesions); each fold's bank is its class-balanced rest."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold

    from ssl_derm.pretext.knn import balanced_bank, knn_predictions, linear_probe_predictions

    classes, y = np.unique(labels, return_inverse=True)
    per_class_groups = min(len(set(groups[y == c])) for c in range(len(classes)))
    folds = min(FOLDS, per_class_groups)
    if len(classes) < 2 or folds < 2:
        return {}
    split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    knn_pred, lp_pred = np.empty_like(y), np.empty_like(y)
    feats = torch.from_numpy(features)
    for train, test in split.split(features, y, groups):
        bank_idx = balanced_bank(train, y, len(train), seed)
        knn = {"bank_labels": torch.as_tensor(y[bank_idx]), "classes": list(classes)}
        knn_pred[test] = knn_predictions(feats[bank_idx], feats[test], knn, KNN_K)
        lp_pred[test] = linear_probe_predictions(feats[bank_idx], feats[test], knn, seed)
    return {
        "folds": folds,
        "knn_balanced_accuracy": round(float(balanced_accuracy_score(y, knn_pred)), 4),
        "linear_probe_balanced_accuracy": round(float(balanced_accuracy_score(y, lp_pred)), 4),
        "chance": round(1 / len(classes), 4),
    }


def _scatter(xy: np.ndarray, colour_by: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    values = pd.Series(colour_by)
    order = values.value_counts().index  # the largest group drawn first, under the others
    cmap = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    size = 6 if len(xy) > 2000 else 14
    for i, v in enumerate(order):
        sel = (values == v).to_numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.7, color=cmap(i % cmap.N), label=f"{v} ({sel.sum():,})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=2, loc="best", frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _projector(folder: Path, features: np.ndarray, table: pd.DataFrame, images: ImageSet, limit: int = 10_000) -> None:
    """TensorBoard projector files (``tensorboard --logdir OUT``), with 32 px thumbnails."""
    from torch.utils.tensorboard import SummaryWriter

    idx = np.arange(min(limit, len(table)))
    thumbs = torch.nn.functional.interpolate(images.images(idx).float() / 255, size=32, mode="area")
    meta = table.iloc[idx][["label", "source"]].fillna("").astype(str).values.tolist()
    with SummaryWriter(str(folder / "tensorboard")) as writer:
        writer.add_embedding(
            torch.from_numpy(features[idx]), metadata=meta, metadata_header=["label", "source"], label_img=thumbs
        )


def _short(source: str) -> str:
    return Path(source).name or source


def run_embed(
    checkpoint: str,
    data: list[str] | None,
    unlabeled: list[str] | None,
    out: str | None,
    method: str = "tsne",
    encoder: str | None = None,
    image_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    cache_dir: str | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> dict:
    from ssl_derm.pretext.knn import encoder_features

    if method == "umap":
        try:
            import umap  # noqa: F401
        except ImportError:
            raise UserError('--method umap needs umap-learn: pip install "ssl-derm[umap]"') from None
    loaded = load_model(checkpoint, encoder, image_size)
    folder = run_dir(out, "embed", overwrite)
    specs = list(data or [None]) + list(unlabeled or [])
    images = open_images(specs, loaded.image_size, cache_dir=cache_dir, progress=progress, resize=loaded.resize)
    pipeline = ImagePipeline(loaded.normalization)
    feats = []
    from tqdm.auto import tqdm

    with torch.inference_mode():
        for i in tqdm(range(0, len(images), batch_size), desc="features", unit="batch", disable=not progress):
            idx = np.arange(i, min(i + batch_size, len(images)))
            feats.append(
                encoder_features(loaded.encoder, images.images(idx), pipeline, default_device(), batch_size).cpu()
            )
    features = torch.cat(feats).numpy().astype(np.float32)
    np.save(folder / "features.npy", features)
    xy = reduce_2d(features, method, seed)
    table = pd.DataFrame(
        {
            "image": images.names,
            "source": [_short(s) for s in images.sources],
            "label": images.labels,
            "x": xy[:, 0],
            "y": xy[:, 1],
        }
    )
    table.to_csv(folder / "embeddings.csv", index=False)
    write_skipped(folder, images.skipped)
    name = str(checkpoint) if checkpoint in ("random", "imagenet") else "/".join(Path(checkpoint).parts[-2:])
    label_colour = table["label"].fillna("unlabelled").tolist()
    _scatter(xy, label_colour, f"{method} of {name} features, by label", folder / f"{method}_by_label.png")
    _scatter(
        xy, table["source"].tolist(), f"{method} of {name} features, by source", folder / f"{method}_by_source.png"
    )
    _projector(folder, features, table, images)

    summary: dict = {
        "checkpoint": str(checkpoint),
        "encoder": loaded.ckpt["encoder_name"] if loaded.ckpt else (encoder or "efficientnet-lite0"),
        "image_size": loaded.image_size,
        "method": method,
        "images": len(images),
        "skipped": len(images.skipped),
        "by_source": table["source"].value_counts().to_dict(),
    }
    labeled = table["label"].notna().to_numpy()
    if labeled.any():
        groups = np.array([g if g is not None else n for g, n in zip(images.groups, images.names)], dtype=object)
        summary.update(
            cross_validated_scores(features[labeled], table["label"][labeled].to_numpy(str), groups[labeled], seed)
        )
        if loaded.ckpt is not None:
            seen = set(loaded.ckpt["seen_images"].get("sha1", []))
            trained = sum(images.sha1[i] in seen for i in np.flatnonzero(labeled))
            summary["labelled_images_the_checkpoint_trained_on"] = int(trained)
            if trained and loaded.classifier is not None:
                print(
                    f"ssl-derm: note: {trained:,} of these labelled images trained this classifier; its features "
                    "saw their labels, so the kNN / probe scores are optimistic",
                    file=sys.stderr,
                )
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    scores = (
        f"; kNN {summary['knn_balanced_accuracy']:.3f}, linear probe {summary['linear_probe_balanced_accuracy']:.3f} "
        f"balanced accuracy ({summary['folds']}-fold, chance {summary['chance']:.3f})"
        if "knn_balanced_accuracy" in summary
        else ""
    )
    print(f"embedded {len(images):,} images ({features.shape[1]} features){scores}")
    print(f"wrote {folder / 'embeddings.csv'}, features.npy, {method}_by_label.png, {method}_by_source.png")
    return summary
