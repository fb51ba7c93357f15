"""``ssl-derm explain``: Grad-CAM maps of a fine-tuned model on real sample images, the
share of each map inside the HAM10000 lesion mask, and the command's contract."""

from __future__ import annotations

import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ssl_derm.cam import cam_in_lesion, cam_layer, centre_map, compute_cams
from ssl_derm.cli import main
from ssl_derm.commands.common import load_model, open_images
from ssl_derm.commands.explain import order_worst_first
from ssl_derm.data import ImagePipeline, sample_dir
from ssl_derm.data.cache import decode_image, fit_mask
from ssl_derm.data.identity import file_sha1
from ssl_derm.encoders import build_encoder
from ssl_derm.finetune.classifier import predict_proba


def _files(root):
    return {p for p in root.rglob("*") if p.is_file()}


def _valid_png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


@pytest.fixture(scope="module")
def loaded_and_images(model_ckpt):
    loaded = load_model(str(model_ckpt))
    return loaded, open_images(None, loaded.image_size, progress=False).images(np.arange(6))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_cam_maps_have_the_image_shape_and_are_not_constant(loaded_and_images, method):
    loaded, images = loaded_and_images
    images = images[:1] if method == "scorecam" else images
    pipeline = ImagePipeline(loaded.normalization)
    # the predicted class: a class the model finds no evidence for can get an all-zero Grad-CAM
    # map (every weighted activation negative, cut by its ReLU)
    ranked = np.argsort(-predict_proba(loaded.classifier, images, pipeline, "cpu"), axis=1)
    targets = ranked[:, 0]
    cams = compute_cams(loaded.classifier, images, targets, pipeline, method)
    assert cams.shape == (len(images), 64, 64) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    assert (cams.reshape(len(cams), -1).std(1) > 0).all()
    if method == "gradcam":  # the map explains the class asked for
        other = compute_cams(loaded.classifier, images, ranked[:, 1], pipeline, method)
        assert not np.allclose(cams, other, atol=1e-3)
    # no stray gradients or hooks left on the model
    assert all(p.grad is None for p in loaded.classifier.parameters())
    assert not any(m._forward_hooks for m in loaded.classifier.modules())


def test_the_cam_layer_is_the_encoders_last_stage():
    lite0, resnet = build_encoder("efficientnet-lite0"), build_encoder("resnet18")
    assert cam_layer(lite0) is lite0.model.blocks[-1] and cam_layer(resnet) is resnet.layer4
    seen = []
    cam_layer(resnet).register_forward_hook(lambda m, i, o: seen.append(o))
    last = resnet(torch.zeros(1, 3, 64, 64))[-1]
    assert seen[0] is last  # the map the classifier pools


def test_cam_in_lesion_is_the_map_mass_inside_the_mask():
    cam = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.5, 0.0, 0.0]])
    mask = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=bool)
    assert cam_in_lesion(cam, mask) == pytest.approx(3.0 / 4.0)  # (1 + 2) / (1 + 0.5 + 2 + 0.5)
    assert cam_in_lesion(np.ones((3, 3)), mask) == pytest.approx(mask.mean())  # chance = lesion area
    assert cam_in_lesion(cam, np.ones((3, 3), bool)) == 1.0 and cam_in_lesion(cam, ~np.ones((3, 3), bool)) == 0.0
    assert np.isnan(cam_in_lesion(np.zeros((3, 3)), mask))
    with pytest.raises(ValueError):
        cam_in_lesion(cam, mask[:2])
    # the centre baseline: a centred lesion holds more of a centre-peaked map than its area
    centred = np.zeros((64, 64), bool)
    centred[16:48, 16:48] = True
    centre = centre_map(64)
    assert centre.shape == (64, 64) and centre.max() == pytest.approx(centre[31:33, 31:33].max())
    assert cam_in_lesion(centre, centred) > 0.5 > centred.mean()


def test_a_cropped_mask_stays_on_its_lesion():
    # a 200x150 mask (HAM10000's size) with a 40x30 lesion at x 100..139, y 30..59
    mask = np.zeros((150, 200), np.uint8)
    mask[30:60, 100:140] = 255
    aligned = fit_mask(Image.fromarray(mask), 64, "crop")
    # crop: the centre 150x150 (x 25..174), then x 64/150; the lesion centre (120, 45) -> (95, 45) -> (40.5, 19.2)
    ys, xs = np.nonzero(aligned)
    assert aligned.shape == (64, 64)
    assert xs.mean() + 0.5 == pytest.approx(95 * 64 / 150, abs=0.6)
    assert ys.mean() + 0.5 == pytest.approx(45 * 64 / 150, abs=0.6)
    assert aligned.mean() == pytest.approx(40 * 30 / 150**2, rel=0.1)
    squashed = fit_mask(Image.fromarray(mask), 64, "squash")
    ys, xs = np.nonzero(squashed)
    assert xs.mean() + 0.5 == pytest.approx(120 * 64 / 200, abs=0.6)

    # a real HAM10000 mask, painted into a 600x450 JPEG (3x the mask, as the original release):
    # the image pipeline's decode and the mask's alignment put the lesion on the same pixels.
    # This one is a palette PNG whose palette maps index 0 to white: read as grey, not by index.
    real = Image.open(sample_dir() / "masks" / "ISIC_0024318_segmentation.png")
    assert real.mode == "P" and (np.asarray(real) == 0).mean() < 0.5 < (np.asarray(real.convert("L")) == 0).mean()
    grey = np.asarray(real.convert("L").resize((600, 450), Image.NEAREST))
    painted = np.where(grey[..., None] >= 128, [255, 0, 0], [0, 0, 255])
    buf = io.BytesIO()
    Image.fromarray(painted.astype(np.uint8)).save(buf, "JPEG", quality=95)
    pixels, _ = decode_image(buf.getvalue(), 64, "crop")
    lesion_in_image = pixels[0].astype(int) > pixels[2].astype(int)
    aligned = fit_mask(real, 64, "crop", image_size=(600, 450))
    iou = (aligned & lesion_in_image).sum() / (aligned | lesion_in_image).sum()
    assert 0.05 < aligned.mean() < 0.95 and iou > 0.9


def test_order_puts_the_most_confident_mistakes_first():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    true = np.array([0, 0, 1, -1, 1])  # mistakes: 1 (p 0.8), 2 (p 0.6), 4 (p 0.95); 3 has no label
    assert order_worst_first(probs, true).tolist() == [4, 1, 2, 0, 3]


def test_explain_on_the_labelled_sample(model_ckpt, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a stray relative write would land here
    (tmp_path / "keep.txt").write_text("x")
    before, sample_before = _files(tmp_path), _files(sample_dir())
    out = tmp_path / "explain"
    args = ["explain", "--checkpoint", str(model_ckpt), "--n", "6", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert {p for p in _files(tmp_path) if out not in p.parents} == before
    assert _files(sample_dir()) == sample_before

    table = pd.read_csv(out / "explain.csv")
    assert len(table) == 6 and table["true_label"].notna().all()
    pngs = sorted((out / "images").glob("*.png"))
    assert [p.name for p in pngs] == sorted(table["png"].str.removeprefix("images/"))
    assert all(_valid_png(p)[0] > 300 for p in pngs)
    grids = sorted(out.glob("grid_*.png"))
    assert {g.name for g in grids} == {f"grid_{c}.png" for c in table["true_label"]}
    assert all(_valid_png(g) for g in grids)
    assert any((out / "tensorboard").glob("events.out.tfevents.*"))

    # the worst mistakes first: the 6 mistakes the model is most sure of, most confident first
    loaded = load_model(str(model_ckpt))
    sample = open_images(None, loaded.image_size, progress=False)
    probs = predict_proba(loaded.classifier, sample.images(), ImagePipeline(loaded.normalization), "cpu")
    classes = loaded.classes
    pred = probs.argmax(1)
    wrong = np.array([classes[p] != t for p, t in zip(pred, sample.labels)])
    expected = np.sort(probs.max(1)[wrong])[::-1][:6]
    assert wrong.sum() >= 6 and (table["correct"] == False).all()  # noqa: E712
    assert np.allclose(table["probability"], expected, atol=1e-4)
    assert (table["target_class"] == table["predicted_label"]).all()

    # every sample image has its lesion mask: the share of the map inside it and the chance level
    assert table["cam_in_lesion"].between(0, 1).all() and table["lesion_area"].between(0, 1, inclusive="neither").all()
    assert (table["cam_std"] > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "gradcam" and summary["n"] == 6 and summary["images"] == 316
    assert summary["overall"]["masked"] == 6
    assert summary["overall"]["cam_in_lesion"] == pytest.approx(table["cam_in_lesion"].mean(), abs=1e-3)
    assert summary["overall"]["lesion_area"] == pytest.approx(table["lesion_area"].mean(), abs=1e-3)
    assert table["centre_in_lesion"].between(0, 1).all() and summary["overall"]["centre_in_lesion"] > 0
    assert summary["wrong_predictions"]["n"] == 6 and summary["correct"]["n"] == 0
    assert sum(v["n"] for v in summary["per_class"].values()) == 6
    assert main(args) == 2  # no overwrite without --overwrite


def test_explain_on_the_recorded_test_split_with_true_targets(model_ckpt, tmp_path):
    out = tmp_path / "split"
    args = ["explain", "--checkpoint", str(model_ckpt), "--split", "test", "--target", "true", "--n", "4"]
    assert main([*args, "--method", "gradcam++", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "explain.csv")
    recorded = set(torch.load(model_ckpt, weights_only=False)["split_images"]["test"]["sha1"])
    assert len(table) == 4 and (table["target_class"] == table["true_label"]).all()
    assert all(file_sha1(open(p, "rb").read()) in recorded for p in table["image"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split"] == "test" and summary["images"] <= len(recorded) and summary["method"] == "gradcam++"


def test_explain_an_unlabelled_folder_with_odd_names(model_ckpt, tmp_path):
    src = sorted((sample_dir() / "images").glob("*.jpg"))[:3]
    data = tmp_path / "new"
    (data / "masks").mkdir(parents=True)
    names = ["we ird#1", "ça&co", "ok"]
    for path, name in zip(src, names):
        shutil.copy(path, data / f"{name}.jpg")
    shutil.copy(sample_dir() / "masks" / f"{src[2].stem}_segmentation.png", data / "masks" / "ok_segmentation.png")
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    (out / "images" / "old.png").write_bytes(b"")
    args = ["explain", "--checkpoint", str(model_ckpt), "--data", str(data), "--out", str(out), "--no-progress"]
    assert main(args) == 2  # no overwrite without --overwrite
    assert main([*args, "--overwrite"]) == 0
    assert not (out / "images" / "old.png").exists()
    table = pd.read_csv(out / "explain.csv")
    assert len(table) == 3  # the mask file below the folder is no image to explain
    assert table["true_label"].isna().all() and table["correct"].isna().all()
    for p in (out / "images").iterdir():
        assert re.fullmatch(r"[A-Za-z0-9_.-]+\.png", p.name) and p.parent == out / "images"
    assert table["cam_in_lesion"].notna().sum() == 1  # only "ok" has a mask
    assert {g.name for g in out.glob("grid_*.png")} == {f"grid_{c}.png" for c in table["predicted_label"]}


def test_explain_refuses_bad_input_with_one_line(model_ckpt, ssl_ckpt, tmp_path, capsys):
    unlabelled = tmp_path / "new"
    unlabelled.mkdir()
    for path in sorted((sample_dir() / "images").glob("*.jpg"))[:2]:
        shutil.copy(path, unlabelled)
    base = ["explain", "--checkpoint", str(model_ckpt), "--no-progress"]
    cases = {
        "--target true: --data": [*base, "--data", str(unlabelled), "--target", "true"],
        "--target melanoma": [*base, "--target", "melanoma"],
        "fine-tuned classifier": ["explain", "--checkpoint", str(ssl_ckpt)],
        "--split test: --data": [*base, "--data", str(unlabelled), "--split", "test"],
        "--n -1": [*base, "--n", "-1"],
        "no such folder": [*base, "--masks", str(tmp_path / "nope")],
    }
    for i, (words, args) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        capsys.readouterr()
        assert main([*args, "--out", str(out)]) == 2, words
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not out.exists(), words
