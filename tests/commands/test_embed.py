"""``ssl-derm embed`` on real sample images."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from ssl_derm.cli import main
from ssl_derm.commands.common import open_images
from ssl_derm.commands.embed import cross_validated_scores
from ssl_derm.data import ImagePipeline, sample_unlabeled
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.pretext.knn import encoder_features


def test_embed_writes_features_map_plots_projector_and_scores(ssl_ckpt, tmp_path):
    out = tmp_path / "emb"
    args = ["embed", "--checkpoint", str(ssl_ckpt), "--unlabeled", str(sample_unlabeled()), "--out", str(out)]
    assert main([*args, "--method", "pca", "--no-progress"]) == 0
    table = pd.read_csv(out / "embeddings.csv")
    features = np.load(out / "features.npy")
    assert len(table) == len(features) == 316 + 64
    assert features.shape[1] == 320 and np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-4)
    assert table["label"].isna().sum() == 64 and set(table["source"]) == {"sample", "isic_unlabeled_sample.zip"}
    assert np.isfinite(table[["x", "y"]].to_numpy()).all() and table["x"].std() > 0
    for png in ("pca_by_label.png", "pca_by_source.png"):
        assert (out / png).stat().st_size > 10_000
    assert list((out / "tensorboard").rglob("projector_config.pbtxt"))
    assert list((out / "tensorboard").rglob("tensors.tsv")) and list((out / "tensorboard").rglob("sprite.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert 0 <= summary["knn_balanced_accuracy"] <= 1 and 0 <= summary["linear_probe_balanced_accuracy"] <= 1
    assert summary["by_source"] == {"sample": 316, "isic_unlabeled_sample.zip": 64}
    # the pretraining saw the training split of the sample (unlabelled): counted, not hidden
    assert 0 < summary["labelled_images_the_checkpoint_trained_on"] < 316
    assert main([*args, "--no-progress"]) == 2  # no overwrite without --overwrite


def test_embed_features_are_the_encoders_pooled_features(tmp_path):
    out = tmp_path / "emb"
    assert (
        main(
            [
                "embed",
                "--checkpoint",
                "imagenet",
                "--image-size",
                "64",
                "--method",
                "pca",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    features = np.load(out / "features.npy")
    images = open_images(None, 64, progress=False).images(np.arange(10))
    encoder = build_encoder("efficientnet-lite0", "imagenet")
    expected = encoder_features(encoder, images, ImagePipeline(encoder_spec(None).normalization), "cpu")
    assert torch.allclose(torch.from_numpy(features[:10]), expected, atol=1e-5)


def test_cross_validated_scores_separate_real_features_from_shuffled_labels(tmp_path):
    """ImageNet features of the real sample: the true labels score above chance, labels
    shuffled across lesions score near chance."""
    images = open_images(None, 64, progress=False)
    encoder = build_encoder("efficientnet-lite0", "imagenet")
    feats = encoder_features(encoder, images.images(), ImagePipeline(encoder_spec(None).normalization), "cpu")
    labels, groups = np.array(images.labels), np.array(images.groups)
    real = cross_validated_scores(feats.numpy(), labels, groups)
    rng = np.random.default_rng(0)
    shuffled = cross_validated_scores(feats.numpy(), rng.permutation(labels), groups)
    assert real["folds"] == 5 and real["chance"] == round(1 / 7, 4)
    assert real["linear_probe_balanced_accuracy"] > shuffled["linear_probe_balanced_accuracy"] + 0.1
    assert shuffled["knn_balanced_accuracy"] < 0.3


def test_umap_map_and_its_missing_package_message(tmp_path, monkeypatch, capsys):
    """UMAP (the optional extra, installed with the dev extra) on real features; without
    the package, one line saying what to install."""
    from ssl_derm.commands.embed import reduce_2d

    images = open_images(None, 64, progress=False)
    encoder = build_encoder("efficientnet-lite0", "imagenet")
    feats = encoder_features(encoder, images.images(), ImagePipeline(encoder_spec(None).normalization), "cpu")
    xy = reduce_2d(feats.numpy(), "umap", seed=0)
    assert xy.shape == (316, 2) and np.isfinite(xy).all() and (xy.std(0) > 0).all()
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # import umap -> ImportError
    out = tmp_path / "emb"
    assert main(["embed", "--checkpoint", "imagenet", "--method", "umap", "--out", str(out)]) == 2
    assert 'pip install "ssl-derm[umap]"' in capsys.readouterr().err and not out.exists()
