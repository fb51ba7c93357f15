"""Lesion segmentation on the bundled real sample: metrics by hand, the decoder transfer
from a context-restoration checkpoint, and finetune / evaluate / benchmark end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ssl_derm.cli import main
from ssl_derm.data import sample_dir, sample_unlabeled
from ssl_derm.errors import UserError
from ssl_derm.finetune.metrics import segmentation_metrics
from ssl_derm.finetune.segmentation import build_segmenter, safe_stem

TINY = ["--image-size", "64", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A context-restoration ssl.ckpt pretrained for 2 steps on the sample (its decoder is trained)."""
    out = tmp_path_factory.mktemp("seg") / "cr"
    args = ["pretrain", "--task", "context_restore", "--out", str(out), "--max-steps", "2", *TINY]
    args += ["--data", str(sample_dir()), "--unlabeled", str(sample_unlabeled()), "--set", "context_restore.swaps=5"]
    assert main(args) == 0
    return out / "ssl.ckpt"


def _masks(*rows: str) -> np.ndarray:
    return np.array([[[c == "#" for c in line] for line in img.split("/")] for img in rows], dtype=np.uint8)


def test_dice_jaccard_and_isic_thresholded_jaccard_by_hand():
    true = _masks(
        "##../##../..../....",  # 4 lesion pixels
        "###./###./###./....",  # 9
        "..../..../..../....",  # empty
        "..../.##./.##./....",  # 4
    )
    pred = _masks(
        "###./###./..../....",  # 6 pixels, 4 of them on the lesion: TP 4, FP 2, FN 0
        "###./###./##../....",  # 8 pixels, all on the lesion: TP 8, FP 0, FN 1
        "..../..../..../....",  # both empty
        "#.../..../..../....",  # misses the lesion: TP 0, FP 1, FN 4
    )
    m = segmentation_metrics(pred.astype(np.float32) * 0.9, true, names=["a", "b", "c", "d"])
    dice = [2 * 4 / (2 * 4 + 2), 2 * 8 / (2 * 8 + 1), 1.0, 0.0]
    jaccard = [4 / 6, 8 / 9, 1.0, 0.0]
    thresholded = [4 / 6, 8 / 9, 1.0, 0.0]  # 0.667 and 0.889 clear the 0.65 bar
    accuracy = [14 / 16, 15 / 16, 1.0, 11 / 16]
    got = {k: [r[k] for r in m["per_image"]] for k in ("dice", "jaccard", "jaccard_thresholded", "pixel_accuracy")}
    assert np.allclose(got["dice"], dice) and np.allclose(got["jaccard"], jaccard)
    assert np.allclose(got["jaccard_thresholded"], thresholded) and np.allclose(got["pixel_accuracy"], accuracy)
    assert m["n_images"] == 4 and [r["image"] for r in m["per_image"]] == ["a", "b", "c", "d"]
    assert np.isclose(m["dice"], np.mean(dice)) and np.isclose(m["jaccard"], np.mean(jaccard))
    assert np.isclose(m["pixel_accuracy"], np.mean(accuracy))
    # below the ISIC bar an image scores 0: one more predicted pixel drops image a to J = 4/7
    pred[0, 2, 0] = 1
    m = segmentation_metrics(pred.astype(np.float32), true)
    assert np.isclose(m["per_image"][0]["jaccard"], 4 / 7) and m["per_image"][0]["jaccard_thresholded"] == 0.0
    assert np.isclose(m["jaccard_thresholded"], (0 + 8 / 9 + 1 + 0) / 4)
    # probabilities are thresholded at 0.5; shapes must agree
    assert segmentation_metrics(np.full((1, 2, 2), 0.5), np.ones((1, 2, 2)))["dice"] == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        segmentation_metrics(np.zeros((1, 2, 2)), np.zeros((1, 3, 3)))


def test_the_restored_decoder_is_loaded_and_only_with_init_decoder(pretrained):
    ckpt = torch.load(pretrained, weights_only=True)
    want = ckpt["decoder_state_dict"]
    with_decoder, source = build_segmenter("efficientnet-lite0", str(pretrained), init_decoder=True)
    assert source == str(pretrained)
    got = with_decoder.decoder.state_dict()
    assert got.keys() == want.keys() and len(want) > 40
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert with_decoder.segmentation_head[0].out_channels == 1  # a new, one-channel head
    encoder = with_decoder.encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in ckpt["encoder_state_dict"].items())

    without, source = build_segmenter("efficientnet-lite0", str(pretrained), init_decoder=False)
    assert source is None
    weights = [k for k in want if k.endswith("weight") and want[k].ndim == 4]
    assert not any(torch.equal(without.decoder.state_dict()[k], want[k]) for k in weights)
    assert all(torch.equal(without.encoder.state_dict()[k], v) for k, v in ckpt["encoder_state_dict"].items())
    assert build_segmenter("efficientnet-lite0", "random")[1] is None


def test_safe_stems_stay_inside_the_folder_and_unique():
    taken: set[str] = set()
    names = [safe_stem(n, taken) for n in ["../../etc/passwd.jpg", "a b.jpg", "a_b.png", "..jpg", "ISIC_1.jpg"]]
    assert names == ["passwd", "a_b", "a_b-2", "_", "ISIC_1"]
    assert all("/" not in n and n not in (".", "..") for n in names)


def test_segmentation_refuses_classification_recipes(capsys):
    code = main(["finetune", "--target", "segmentation", "--mixup", "0.2", "--out", "/nonexistent/never", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "mixup" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UserError, match="target='detection'"):
        from ssl_derm.config import FinetuneConfig

        FinetuneConfig(target="detection")


def test_finetune_evaluate_benchmark_segmentation_end_to_end(pretrained, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ft = tmp_path / "ft"
    args = ["finetune", "--target", "segmentation", "--init", str(pretrained), "--out", str(ft), "--max-steps", "2"]
    assert main([*args, *TINY, "--set", "log_every_n_steps=1"]) == 0
    metrics = json.loads((ft / "metrics.json").read_text())
    splits = pd.read_csv(ft / "splits.csv")
    n_test = int((splits["split"] == "test").sum())
    assert metrics["split"] == "test" and metrics["n_images"] == n_test == len(metrics["per_image"])
    for key in ("dice", "jaccard", "jaccard_thresholded", "pixel_accuracy", "best_epoch_val_dice"):
        assert 0 <= metrics[key] <= 1, key
    curve = metrics["val_history"]  # one validation Dice per epoch run; the best is the one kept
    assert len(curve) == metrics["epochs_run"]
    assert abs(max(e["dice"] for e in curve) - metrics["best_epoch_val_dice"]) < 1e-6
    assert metrics["init_name"] == "context_restore+decoder" and metrics["decoder_init"] == str(pretrained)
    assert splits["mask"].str.endswith("_segmentation.png").all()
    model = torch.load(ft / "model.ckpt", weights_only=True)
    assert model["task"] == "segmenter" and model["image_size"] == 64  # the size came from ssl.ckpt
    assert {"decoder_state_dict", "segmentation_head_state_dict", "seen_images", "split_images"} <= set(model)
    events = EventAccumulator(str(ft / "tensorboard"))
    events.Reload()
    assert {"train/loss", "val/dice", "val/jaccard"} <= set(events.Tags()["scalars"])
    assert {"val/overlays", "test/overlays"} <= set(events.Tags()["images"])

    # evaluate: the model's own test split, the same scores, one 0/255 PNG per image
    ev = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(ft / "model.ckpt"), "--out", str(ev)]) == 0
    scored = json.loads((ev / "metrics.json").read_text())
    assert scored["n_images"] == n_test and np.isclose(scored["dice"], metrics["dice"])
    pred = pd.read_csv(ev / "predictions.csv")
    assert len(pred) == n_test and pred["predicted_mask"].str.startswith("masks/").all()
    pngs = sorted((ev / "masks").glob("*.png"))
    assert len(pngs) == n_test
    with Image.open(pngs[0]) as im:
        assert im.size == (64, 64) and set(np.unique(np.asarray(im))) <= {0, 255}
    # a segmenter is no classifier for the commands that need one (explain's class maps)
    capsys.readouterr()
    assert main(["explain", "--checkpoint", str(ft / "model.ckpt"), "--out", str(tmp_path / "cam")]) == 2
    assert "segmentation model" in capsys.readouterr().err

    # benchmark: one checkpoint as two inits, encoder only and encoder + decoder
    bm = tmp_path / "bm"
    args = ["benchmark", "--target", "segmentation", "--out", str(bm), "--seeds", "1", "--label-fractions", "1.0"]
    args += ["--inits", f"{pretrained}:encoder,{pretrained}:decoder", "--max-steps", "1", *TINY]
    assert main(args) == 0
    results = pd.read_csv(bm / "results.csv")
    assert list(results.columns) == [
        "init",
        "label_fraction",
        "seed",
        "fold",
        "recipe",
        "val_dice",
        "dice",
        "jaccard",
        "jaccard_thresholded",
        "pixel_accuracy",
        "run",
    ]
    assert list(results["init"]) == ["context_restore", "context_restore+decoder"]
    paired = pd.read_csv(bm / "paired.csv")  # the decoder's effect, paired over the same test images
    assert list(zip(paired["init"], paired["baseline"])) == [("context_restore+decoder", "context_restore")]
    expected = results["dice"].iloc[1] - results["dice"].iloc[0]
    bm_test = (pd.read_csv(bm / "splits.csv")["split"] == "test").sum()
    assert abs(paired["diff"].iloc[0] - expected) < 1e-6 and paired["images"].iloc[0] == bm_test
    held = pd.read_csv(bm / "splits.csv").query("split == 'test'")  # the draws take whole lesions
    assert paired["lesions"].iloc[0] == held["group"].nunique() < bm_test
    assert results[["val_dice", "dice", "jaccard"]].stack().between(0, 1).all()
    assert (bm / "results.md").is_file() and (bm / "label_efficiency.png").is_file()
    ran = [json.loads((bm / "runs" / n / "fraction1" / "seed0" / "metrics.json").read_text()) for n in results["init"]]
    assert [m["decoder_init"] for m in ran] == [None, str(pretrained)]
    capsys.readouterr()
    assert main(args) == 0  # finished runs are skipped, not redone
    assert capsys.readouterr().out.count("done, skipped") == 2
    bad = ["benchmark", "--out", str(tmp_path / "bm2"), "--inits", "random:decoder", *TINY, "--target", "segmentation"]
    assert main(bad) == 2 and "has no U-Net decoder" in capsys.readouterr().err
