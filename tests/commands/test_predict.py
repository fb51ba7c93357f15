"""``ssl-derm predict`` and test-time augmentation, on real sample images."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_derm.cli import main
from ssl_derm.commands.common import load_model, open_images
from ssl_derm.data import ImagePipeline, sample_unlabeled
from ssl_derm.finetune.classifier import dihedral, predict_proba

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]


def _messy_zip(path, n_good=6):
    """Real ISIC JPEGs, a truncated one, an empty one, and a non-image note."""
    with zipfile.ZipFile(sample_unlabeled()) as src, zipfile.ZipFile(path, "w") as dst:
        names = sorted(n for n in src.namelist() if n.endswith(".jpg"))
        for n in names[:n_good]:
            dst.writestr(f"new/{n.split('/')[-1]}", src.read(n))
        dst.writestr("new/truncated.jpg", src.read(names[n_good])[:2000])
        dst.writestr("new/empty.jpg", b"")
        dst.writestr("new/readme.txt", b"not an image")
    return path


def test_predict_on_an_unlabelled_zip_gives_one_row_per_readable_member(model_ckpt, tmp_path):
    archive = _messy_zip(tmp_path / "new.zip")
    out = tmp_path / "pred"
    assert (
        main(["predict", "--checkpoint", str(model_ckpt), "--data", str(archive), "--out", str(out), "--no-progress"])
        == 0
    )
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 6 and table["image"].str.startswith("new/ISIC_").all()
    classes = torch.load(model_ckpt, weights_only=True)["class_names"]
    probs = table[[f"prob_{c}" for c in classes]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (table["predicted_label"] == [classes[i] for i in probs.argmax(1)]).all()
    assert "true_label" not in table
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in skipped) == ["new/empty.jpg", "new/truncated.jpg"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 6 and summary["skipped"] == 2 and summary["images_per_s"] > 0
    # the contract: no overwrite without --overwrite, a self-supervised checkpoint is refused
    args = ["predict", "--checkpoint", str(model_ckpt), "--data", str(archive), "--out", str(out), "--no-progress"]
    assert main(args) == 2
    assert main([*args, "--overwrite"]) == 0


def test_predict_refuses_an_ssl_checkpoint_and_a_missing_source(ssl_ckpt, model_ckpt, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(ssl_ckpt), "--out", str(tmp_path / "a")]) == 2
    assert "needs a fine-tuned model" in capsys.readouterr().err
    assert (
        main(
            ["predict", "--checkpoint", str(model_ckpt), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]
        )
        == 2
    )
    assert not (tmp_path / "a").exists()


def test_predict_keeps_the_labels_of_a_labelled_source(model_ckpt, tmp_path):
    out = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(model_ckpt), "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 316 and table["true_label"].nunique() == 7


def test_tta_averages_over_the_eight_dihedral_views(model_ckpt):
    loaded = load_model(str(model_ckpt))
    images = open_images(None, loaded.image_size, progress=False).images(np.arange(8))
    pipeline = ImagePipeline(loaded.normalization)
    plain = predict_proba(loaded.classifier, images, pipeline, "cpu")
    tta = predict_proba(loaded.classifier, images, pipeline, "cpu", tta=True)
    assert np.allclose(tta.sum(1), 1, atol=1e-5)
    assert not np.allclose(plain, tta, atol=1e-4)  # the views do differ for a CNN
    # the mean over the group is the same for any view of the image: rotate and flip the input
    for view in dihedral(images)[1:]:
        moved = predict_proba(loaded.classifier, view.contiguous(), pipeline, "cpu", tta=True)
        assert np.allclose(moved, tta, atol=1e-5)
    # and it is the mean of the per-view predictions
    views = [predict_proba(loaded.classifier, v.contiguous(), pipeline, "cpu") for v in dihedral(images)]
    assert np.allclose(np.mean(views, 0), tta, atol=1e-5)


def test_evaluate_with_tta(model_ckpt, tmp_path):
    out = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(model_ckpt), "--out", str(out), "--tta"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] is True and 0 <= metrics["balanced_accuracy"] <= 1


def test_predict_with_a_segmenter_writes_one_mask_per_image(ssl_ckpt, tmp_path):
    """A segmentation model.ckpt: predict writes each image's mask, and the mask is the
    model's own prediction on the same pixels (checked against predict_masks directly)."""
    from PIL import Image

    from ssl_derm.finetune.segmentation import load_segmenter, predict_masks

    seg = tmp_path / "seg"
    args = ["finetune", "--target", "segmentation", "--init", str(ssl_ckpt), "--out", str(seg), "--max-steps", "2"]
    assert main([*args, *TINY]) == 0
    out = tmp_path / "masks"
    archive = str(sample_unlabeled())
    assert main(["predict", "--checkpoint", str(seg / "model.ckpt"), "--data", archive, "--out", str(out)]) == 0
    table = pd.read_csv(out / "predictions.csv")
    images = open_images([archive], 64, progress=False)
    assert list(table["image"]) == list(images.names) and table["predicted_mask"].is_unique
    model, ckpt = load_segmenter(seg / "model.ckpt")
    probs = predict_masks(model, images.images(), ImagePipeline(ckpt["normalization"]), "cpu")
    for row, p in zip(table.itertuples(), probs):
        mask = np.array(Image.open(out / row.predicted_mask))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, p > 0.5)
        assert row.lesion_area_pred == pytest.approx((p > 0.5).mean())
    assert json.loads((out / "summary.json").read_text())["target"] == "segmentation"
