"""The benchmark's report tables from finished runs' per-image files: Grad-CAM mass inside
the lesion (``cam_comparisons``), recall per class (``recall_markdown``) and how the runs
ended (``training_markdown``)."""

import json

import numpy as np
import pandas as pd
import pytest

from ssl_derm.finetune.benchmark.compare import cam_comparisons
from ssl_derm.finetune.benchmark.regenerate import CAM_FILE
from ssl_derm.finetune.benchmark.reports import cam_markdown, recall_markdown, training_markdown

IMAGES = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
AREA = [0.2, 0.4, 0.3, np.nan, 0.5]  # d.jpg has no mask


def _run(tmp_path, init: str, seed: int, cams: list[float], area=AREA) -> dict:
    run = tmp_path / init / f"seed{seed}"
    run.mkdir(parents=True)
    table = pd.DataFrame({"image": IMAGES, "cam_in_lesion": cams, "lesion_area": area, "centre_in_lesion": 0.6})
    table.sample(frac=1, random_state=seed).to_csv(run / CAM_FILE, index=False)  # row order does not matter
    return {"init": init, "label_fraction": 1.0, "fold": 0, "seed": seed, "_run": run}


def test_cam_table_uses_one_image_set_and_scores_empty_maps_as_uniform(tmp_path):
    rows = [
        _run(tmp_path, "imagenet", 0, [0.5, 0.5, 0.5, np.nan, 0.5]),
        _run(tmp_path, "imagenet", 1, [0.3, 0.3, np.nan, np.nan, 0.3]),  # c.jpg: an all-zero map
        _run(tmp_path, "ssl", 0, [0.9, 0.7, 0.8, np.nan, 0.6]),
        _run(tmp_path, "ssl", 1, [0.8, 0.8, 0.8, 0.1, 0.8]),
    ]
    table = cam_comparisons(rows).set_index("init")
    assert (table["images"] == 4).all() and np.isclose(table.loc["ssl", "lesion_area"], np.mean([0.2, 0.4, 0.3, 0.5]))
    imagenet = [0.5, np.mean([0.3, 0.3, 0.3, 0.3])]  # the empty map scores the lesion area, 0.3
    ssl = [np.mean([0.9, 0.7, 0.8, 0.6]), 0.8]
    assert np.isclose(table.loc["imagenet", "cam_in_lesion"], np.mean(imagenet))
    assert np.isclose(table.loc["imagenet", "cam_std"], np.std(imagenet, ddof=1))
    assert np.isclose(table.loc["ssl", "vs_imagenet"], np.mean(ssl) - np.mean(imagenet))
    assert table.loc["ssl", "vs_imagenet_lo"] > 0  # ahead on every image of both seeds
    assert np.isnan(table.loc["imagenet", "vs_imagenet"]) and np.isnan(table.loc["ssl", "vs_random"])
    assert "| ssl | 1 | 0 | 2 | 4 |" in cam_markdown(cam_comparisons(rows))


def test_cam_table_leaves_out_a_split_without_masks(tmp_path):
    none = [np.nan] * 5
    rows = [_run(tmp_path, "imagenet", 0, none, none), _run(tmp_path, "ssl", 0, none, none)]
    assert cam_comparisons(rows).empty and cam_markdown(cam_comparisons(rows)) == ""


def _cm(matrix) -> dict:
    return {"labels": ["mel", "nv", "bcc"], "matrix": matrix}


def test_recall_per_class_is_the_mean_over_seeds_with_the_sample_std():
    rows = [
        {
            "init": "imagenet",
            "label_fraction": 0.1,
            "fold": 0,
            "confusion_matrix": _cm([[1, 1, 0], [0, 4, 0], [0, 0, 0]]),
        },
        {
            "init": "imagenet",
            "label_fraction": 0.1,
            "fold": 0,
            "confusion_matrix": _cm([[2, 0, 0], [2, 2, 0], [0, 1, 1]]),
        },
    ]
    text = recall_markdown(rows)
    assert "| init | label fraction | fold | seeds | mel | nv | bcc |" in text
    mel, nv = [0.5, 1.0], [1.0, 0.5]
    cells = [f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}" for v in (mel, nv)]
    # bcc: absent from seed 0's test part, so its recall is seed 1's alone
    assert f"| imagenet | 0.1 | 0 | 2 | {' | '.join(cells)} | 0.50 ± 0.00 |" in text


@pytest.mark.parametrize("rows", [[], [{"init": "x", "label_fraction": 1.0, "fold": 0}]])
def test_recall_section_is_empty_without_confusion_matrices(rows):
    assert recall_markdown(rows) == ""


def test_training_table_counts_the_runs_the_budget_ended(tmp_path):
    rows = []
    for seed, (kept, ran) in enumerate([(12, 20), (25, 38), (30, 38)]):  # seeds 1 and 2 ran to the budget
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        record = {"best_epoch": kept, "epochs_run": ran, "epochs_budget": 38, "min_epochs": 19}
        (run / "metrics.json").write_text(json.dumps(record))
        rows.append({"init": "random", "label_fraction": 0.1, "fold": 0, "recipe": "encoder_lr=0.001", "_run": run})
    rows.append({"init": "imagenet", "label_fraction": 0.1, "fold": 0})  # no run folder: left out
    text = training_markdown(rows)
    assert "| random | 0.1 | 0 | encoder_lr=0.001 | 12, 25, 30 | 20, 38, 38 | 19 | 38 | 2 of 3 | 0 of 3 |" in text
    assert "imagenet" not in text and training_markdown(rows[-1:]) == ""
    # seed 1 kept its last epoch at 38 and ran again at twice the budget: the budgets differ
    record = {"best_epoch": 60, "epochs_run": 68, "epochs_budget": 76, "min_epochs": 38}
    (tmp_path / "seed1" / "metrics.json").write_text(json.dumps(record))
    (tmp_path / "seed2" / "metrics.json").write_text(json.dumps({**record, "best_epoch": 76, "epochs_run": 76}))
    text = training_markdown(rows)
    assert "| 12, 60, 76 | 20, 68, 76 | 19, 38, 38 | 38, 76, 76 | 1 of 3 | 1 of 3 |" in text


def test_results_table_gives_mean_and_std_per_init_and_marks_no_best():
    from ssl_derm.finetune.report import results_markdown

    results = pd.DataFrame(
        {
            "init": ["imagenet", "imagenet", "ssl", "ssl"],
            "label_fraction": [1.0] * 4,
            "balanced_accuracy": [0.60, 0.70, 0.64, 0.68],
        }
    )
    text = results_markdown(results, ["balanced_accuracy"])
    assert "| imagenet | 2 | 0.650 ± 0.071 |" in text and "| ssl | 2 | 0.660 ± 0.028 |" in text
    assert "**" not in text  # a higher mean inside the noise is not shown as the winner
