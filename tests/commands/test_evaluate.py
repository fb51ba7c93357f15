"""``ssl-derm evaluate`` on a source the model never saw (an external set) and its flags."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ssl_derm.cli import main
from ssl_derm.data import sample_dir

HAM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ham10000"


def _external_csv(folder: Path, n: int = 24) -> Path:
    """A labelled CSV of HAM10000 images that are not in the bundled sample (so neither the
    model nor its pretraining saw them), a few of every class present."""
    meta = pd.read_csv(HAM / "HAM10000_metadata.csv")
    sample = set(pd.read_csv(sample_dir() / "HAM10000_metadata.csv")["image_id"])
    meta = meta[~meta["image_id"].isin(sample)]
    rows = meta.groupby("dx", group_keys=False).head(4).head(n)
    table = pd.DataFrame(
        {"image": [str(HAM / "images" / f"{i}.jpg") for i in rows["image_id"]], "label": rows["dx"].to_numpy()}
    )
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "external.csv", index=False)
    return folder / "external.csv"


def test_evaluate_scores_an_external_set_whole_and_says_so(model_ckpt, tmp_path, capsys):
    csv = _external_csv(tmp_path / "ext")
    out = tmp_path / "ev"
    assert (
        main(["evaluate", "--checkpoint", str(model_ckpt), "--data", str(csv), "--out", str(out), "--no-progress"]) == 0
    )
    err = capsys.readouterr().err
    assert "an external set, scoring all 24 of its images" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 24
    assert len(pd.read_csv(out / "predictions.csv")) == 24


def test_a_source_holding_the_models_training_images_is_not_external(model_ckpt, tmp_path, capsys):
    """Any image of the model's splits in --data makes it the model's own source again: with
    none of its test images there, evaluate stops (as before) instead of scoring it whole."""
    splits = pd.read_csv(model_ckpt.parent / "splits.csv")
    own = splits[splits["split"] == "train"][["image", "label"]].head(5)
    pd.concat([pd.read_csv(_external_csv(tmp_path / "ext")), own]).to_csv(tmp_path / "mixed.csv", index=False)
    ev = ["evaluate", "--checkpoint", str(model_ckpt), "--data", str(tmp_path / "mixed.csv"), "--no-progress"]
    assert main([*ev, "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "test images this model was trained with are in" in err and "external" not in err
