import shutil

import pandas as pd
import pytest

from ssl_derm.data import load_labeled, open_unlabeled, sample_dir, sample_unlabeled
from ssl_derm.errors import UserError


def test_bundled_sample_is_a_ham10000_folder(sample_table):
    assert len(sample_table) == 316
    assert set(sample_table["label"]) == {"nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"}
    assert sample_table["group"].str.startswith("HAM_").all()
    assert sample_table["group"].nunique() == 217


def test_csv_source_relative_paths_and_split(tmp_path, sample_table):
    rows = sample_table.head(12)
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for p in rows["image"]:
        shutil.copy(p, img_dir)
    csv = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "image": ["imgs/" + p.split("/")[-1] for p in rows["image"]],
            "label": rows["label"],
            "group": rows["group"],
            "split": ["train"] * 8 + ["val"] * 2 + ["test"] * 2,
        }
    ).to_csv(csv, index=False)
    table = load_labeled(csv)
    assert len(table) == 12 and (table["split"] == "train").sum() == 8
    assert all(p.startswith(str(tmp_path)) for p in table["image"])


def test_image_folder_source(tmp_path, sample_table):
    for label in ("mel", "nv"):
        (tmp_path / label).mkdir()
        for p in sample_table[sample_table["label"] == label]["image"].head(3):
            shutil.copy(p, tmp_path / label)
    table = load_labeled(tmp_path)
    assert sorted(table["label"].value_counts().items()) == [("mel", 3), ("nv", 3)]


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\na.jpg,nv\n", "missing column(s) image"),
        ("image,label\nnope.jpg,nv\n", "do not exist (first: nope.jpg)"),
        ("image,label\n", "holds no images"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, content, message):
    csv = tmp_path / "x.csv"
    csv.write_text(content)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_labeled(csv)


def test_ham_folder_with_missing_image_names_it(tmp_path):
    shutil.copytree(sample_dir(), tmp_path / "ham")
    victim = sorted((tmp_path / "ham" / "images").iterdir())[0]
    victim.unlink()
    with pytest.raises(UserError, match=victim.stem):
        load_labeled(tmp_path / "ham")


def test_unlabeled_zip_member_names():
    src = open_unlabeled(sample_unlabeled())
    assert len(src) == 64 and all(n.startswith("isic_unlabeled/") for n in src.names)


def test_unknown_unlabeled_kind_is_refused(tmp_path):
    f = tmp_path / "x.rar"
    f.write_bytes(b"rar")
    with pytest.raises(UserError, match="unsupported"):
        open_unlabeled(f)
