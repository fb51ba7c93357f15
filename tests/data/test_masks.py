"""Lesion masks on the bundled real sample: found, decoded onto their lesions, augmented
with their images, and bad masks refused (or skipped and counted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ssl_derm.cli import main
from ssl_derm.data import sample_dir, train_augment, write_splits
from ssl_derm.data.cache import decode_mask, decoded_size
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.errors import UserError

SIZE = 64


@pytest.fixture(scope="module")
def lab():
    return prepare_labeled(None, SIZE, masks=True, progress=False)


def _hand_mask(mask_path: str) -> np.ndarray:
    """The lesion mask as the README defines it (>= 128 of 255 is lesion), at its own size."""
    with Image.open(mask_path) as m:
        return np.asarray(m.convert("L")) >= 128


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([ys.mean(), xs.mean()])


def test_the_ham10000_folder_source_names_every_mask(sample_table):
    assert "mask" in sample_table
    for image, mask in zip(sample_table["image"], sample_table["mask"]):
        assert Path(mask).name == f"{Path(image).stem}_segmentation.png" and Path(mask).is_file()


def test_a_decoded_mask_lies_on_its_lesion(lab):
    """Centroid and area of the decoded 64 px mask equal those computed by hand from the PNG
    with the image's crop (200x150: short side 150 -> 64 px, centre square x in [25, 175)),
    for the sample images whose lesion is farthest from the centre."""
    table = lab.table
    offsets = []
    for mask in table["mask"]:
        hand = _hand_mask(mask)
        assert hand.shape == (150, 200), "the sample's masks are 200x150 like its images"
        offsets.append(np.abs(_centroid(hand[:, 25:175]) - 74.5).max())
    chosen = np.argsort(offsets)[-5:]  # off-centre lesions: a misaligned crop would show
    assert max(offsets) > 20
    darker = []
    for i in chosen:
        row = table.iloc[i]
        square = _hand_mask(row["mask"])[:, 25:175]
        scale = SIZE / 150
        want = (_centroid(square) + 0.5) * scale - 0.5
        decoded = lab.bank.gather_masks([row["row"]])[0, 0].numpy()
        assert set(np.unique(decoded)) <= {0, 1}
        assert np.abs(_centroid(decoded) - want).max() < 1.0, (row["image"], _centroid(decoded), want)
        assert abs(decoded.mean() - square.mean()) < 0.02
        # ... and the pixels under it are the lesion: darker than the skin around it (but for
        # dermatofibromas, whose white central scar is as bright as skin)
        grey = lab.bank.gather([row["row"]])[0].float().mean(0).numpy()
        if row["label"] != "df":
            darker.append(grey[decoded == 1].mean() < grey[decoded == 0].mean() - 5)
    assert len(darker) >= 3 and all(darker)


def test_a_mask_smaller_than_its_image_is_brought_to_the_image_first(tmp_path, sample_table):
    """HAM10000's full-size images are 600x450 and their masks 200x150: an enlarged copy of
    a sample image with the original mask decodes to the same mask."""
    row = sample_table.iloc[3]
    big = tmp_path / "big.jpg"
    with Image.open(row["image"]) as im:
        im.resize((600, 450), Image.BICUBIC).save(big, quality=95)
    data = Path(row["mask"]).read_bytes()
    small = decode_mask(data, SIZE, "crop", decoded_size(row["image"], SIZE))[0]
    large = decode_mask(data, SIZE, "crop", decoded_size(big, SIZE))[0]
    assert decoded_size(big, SIZE) == (600, 450)
    inter, union = (small & large).sum(), (small | large).sum()
    assert inter / union > 0.97


def test_one_augmentation_draw_moves_image_and_mask_alike(lab):
    """The training augmentation applied to image + mask: the mask is warped exactly as a
    copy of it placed in the image's red channel, colour jitter never touches it, and the
    warped lesion is still darker than the warped skin."""
    idx = lab.indices("train")[:16]
    x = lab.bank.gather(idx).float() / 255
    m = lab.bank.gather_masks(idx).float()
    aug = train_augment(SIZE)
    params = aug.draw(x, torch.Generator().manual_seed(3))
    xa, ma = aug.apply_pair(x, m, params)
    assert set(torch.unique(ma).tolist()) <= {0.0, 1.0}
    assert not torch.equal(ma, m)  # the draw moved the masks
    red = torch.zeros_like(x)
    red[:, 0] = m[:, 0]
    geometric = train_augment(SIZE, colour=False)
    assert [p.name for p in params[:-1]] == [p.name for p in geometric.draw(x)]
    warped = geometric.apply(red, params[:-1])[:, 0] > 0.5
    for i in range(len(idx)):
        inter = (warped[i] & (ma[i, 0] > 0)).sum().item()
        union = (warped[i] | (ma[i, 0] > 0)).sum().item()
        assert union == 0 or inter / union > 0.9, (i, inter, union)
    # lesions darker than their skin before the draw are darker after it too (within the
    # warped frame: the rotation's black corners are no skin)
    frame = geometric.apply(torch.ones_like(x), params[:-1])[:, 0] > 0.99
    before, after = x.mean(1), xa.mean(1)
    checked = 0
    for i in range(len(idx)):
        inside, outside = m[i, 0] > 0, m[i, 0] == 0
        if not (inside.any() and outside.any()) or before[i][inside].mean() > before[i][outside].mean() - 0.04:
            continue
        lesion, skin = (ma[i, 0] > 0) & frame[i], (ma[i, 0] == 0) & frame[i]
        if lesion.sum() < 20 or skin.sum() < 20:
            continue
        assert after[i][lesion].mean() < after[i][skin].mean(), i
        checked += 1
    assert checked >= 8
    # the pipeline's pair path: same warp for the mask, normalised channels_last images
    images, masks = lab.bank.gather(idx[:4]), lab.bank.gather_masks(idx[:4])
    from ssl_derm.data import ImagePipeline

    pipe = ImagePipeline({"mean": [0.5] * 3, "std": [0.5] * 3}, train_augment(SIZE))
    xi, mi = pipe.pair(images, masks, train=True, generator=torch.Generator().manual_seed(1))
    assert xi.is_contiguous(memory_format=torch.channels_last) and mi.shape == (4, 1, SIZE, SIZE)
    xe, me = pipe.pair(images, masks, train=False)
    assert torch.equal(me, masks.float())


def test_a_classification_splits_file_finds_the_masks_by_the_ham10000_layout(tmp_path, sample_table):
    from ssl_derm.data.splits import make_splits

    path = write_splits(make_splits(sample_table.drop(columns=["mask"])), tmp_path)
    assert "mask" not in pd.read_csv(path).columns
    lab = prepare_labeled(None, SIZE, splits=path, masks=True, progress=False)
    assert lab.bank.has_masks and (lab.table["mask"] != "").all() and len(lab.table) == 316


def _mask_csv(tmp_path: Path, sample_table: pd.DataFrame, bad: dict[int, str]) -> Path:
    """A CSV source of 40 sample images with a mask column; rows in ``bad`` get that mask path."""
    rows = sample_table.head(40).copy()
    rows["split"] = ["train"] * 28 + ["val"] * 6 + ["test"] * 6
    rows["group"] = [Path(p).stem for p in rows["image"]]
    masks = list(rows["mask"])
    for i, path in bad.items():
        masks[i] = path
    rows["mask"] = masks
    csv = tmp_path / "seg.csv"
    rows[["image", "label", "group", "split", "mask"]].to_csv(csv, index=False)
    return csv


def _one_line_error(capsys, code, *expected: str):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and all(e in err for e in expected), err
    assert len(err.strip().splitlines()) == 1, err


TINY = ["--target", "segmentation", "--init", "random", "--image-size", "64", "--no-progress", "--max-steps", "1"]


def test_a_missing_mask_is_one_line_naming_it(tmp_path, sample_table, capsys):
    csv = _mask_csv(tmp_path, sample_table, {5: str(tmp_path / "gone_segmentation.png")})
    code = main(["finetune", "--data", str(csv), "--out", str(tmp_path / "run"), *TINY])
    _one_line_error(capsys, code, "gone_segmentation.png", "missing", "--skip-missing-masks")
    assert not (tmp_path / "run" / "model.ckpt").exists()


def test_a_corrupt_mask_is_one_line_naming_it(tmp_path, sample_table, capsys):
    corrupt = tmp_path / "corrupt_segmentation.png"
    corrupt.write_bytes(Path(sample_table["mask"].iloc[7]).read_bytes()[:40])  # a truncated PNG
    csv = _mask_csv(tmp_path, sample_table, {7: str(corrupt)})
    code = main(["finetune", "--data", str(csv), "--out", str(tmp_path / "run"), *TINY])
    _one_line_error(capsys, code, "corrupt_segmentation.png", "cannot decode", "--skip-missing-masks")


def test_skip_missing_masks_leaves_them_out_and_counts_them(tmp_path, sample_table, capsys):
    corrupt = tmp_path / "corrupt_segmentation.png"
    corrupt.write_bytes(b"not a png at all")
    csv = _mask_csv(tmp_path, sample_table, {2: str(tmp_path / "gone_segmentation.png"), 30: str(corrupt), 35: ""})
    with pytest.raises(UserError, match=r"3 of 40 image\(s\) have no readable lesion mask"):
        prepare_labeled(csv, SIZE, masks=True, progress=False)
    capsys.readouterr()
    lab = prepare_labeled(csv, SIZE, masks=True, skip_missing_masks=True, progress=False)
    assert "skipped 3 of 40 image(s) without a readable lesion mask" in capsys.readouterr().err
    assert len(lab.table) == 37 and lab.table["split"].value_counts().to_dict() == {"train": 27, "val": 5, "test": 5}
    kept = set(lab.table["image"])
    assert not {sample_table["image"].iloc[i] for i in (2, 30, 35)} & kept
    # rows still point at their own pixels and masks
    first = lab.table.iloc[2]
    assert first["image"] == sample_table["image"].iloc[3]
    want = decode_mask(Path(first["mask"]).read_bytes(), SIZE, "crop", decoded_size(first["image"], SIZE))
    assert np.array_equal(lab.bank.gather_masks([first["row"]])[0].numpy(), want)
    # the classification path ignores masks entirely
    plain = prepare_labeled(csv, SIZE, progress=False)
    assert len(plain.table) == 40 and not plain.bank.has_masks


def test_without_a_mask_column_the_ham10000_layout_is_the_fallback(tmp_path, sample_table):
    import shutil

    rows = sample_table.head(40).drop(columns=["mask"])
    csv = tmp_path / "plain.csv"
    rows.to_csv(csv, index=False)  # images inside the sample folder: its masks/ folder is found
    lab = prepare_labeled(csv, SIZE, masks=True, progress=False)
    assert lab.table["mask"].str.startswith(str(sample_dir())).all()
    (tmp_path / "images").mkdir()
    for p in rows["image"]:
        shutil.copy(p, tmp_path / "images")
    rows = rows.assign(image=[f"images/{Path(p).name}" for p in rows["image"]])
    rows.to_csv(csv, index=False)  # copies with no masks anywhere near them
    with pytest.raises(UserError, match="no lesion masks found for segmentation"):
        prepare_labeled(csv, SIZE, masks=True, progress=False)
