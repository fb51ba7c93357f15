import numpy as np
import pytest

from ssl_derm.data import class_weights, label_fraction, make_splits


def test_splits_are_lesion_disjoint_stratified_and_seeded(sample_table):
    table = make_splits(sample_table, (0.7, 0.15, 0.15), seed=3)
    assert table.groupby("group")["split"].nunique().max() == 1
    for split in ("train", "val", "test"):
        assert set(table[table["split"] == split]["label"]) == set(sample_table["label"])
    share = table["split"].value_counts(normalize=True)
    assert share["train"] == pytest.approx(0.7, abs=0.06)
    again = make_splits(sample_table, (0.7, 0.15, 0.15), seed=3)
    assert (again["split"] == table["split"]).all()
    other = make_splits(sample_table, (0.7, 0.15, 0.15), seed=4)
    assert (other["split"] != table["split"]).any()


def test_label_fraction_is_grouped_subset_of_train(sample_table):
    table = make_splits(sample_table, seed=0)
    small = label_fraction(table, 0.3, seed=0)
    train, small_train = table[table["split"] == "train"], small[small["split"] == "train"]
    assert set(small_train["image"]) < set(train["image"])
    assert len(small_train) == pytest.approx(0.3 * len(train), rel=0.25)
    assert set(small_train["label"]) == set(train["label"])  # every class kept
    kept = set(small_train["group"])
    assert set(train[train["group"].isin(kept)]["image"]) == set(small_train["image"])  # whole lesions
    assert small[small["split"] != "train"]["image"].tolist() == table[table["split"] != "train"]["image"].tolist()


def test_class_weights():
    y = np.array([0] * 6 + [1] * 3 + [2] * 1)
    assert class_weights(y, 3, "none") is None
    np.testing.assert_allclose(class_weights(y, 3, "balanced"), [10 / 18, 10 / 9, 10 / 3])
    np.testing.assert_allclose(class_weights(y, 3, "median"), [0.5, 1.0, 3.0])
