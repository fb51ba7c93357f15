"""Image sources, splits, the decode-once cache and device-side augmentation."""

from ssl_derm.data.archives import FileList, ImageSource, open_unlabeled
from ssl_derm.data.cache import Decoded, decode_source, default_cache_dir
from ssl_derm.data.dataset import BankDataset, ImageBank, make_loader
from ssl_derm.data.sources import load_labeled, sample_dir, sample_unlabeled
from ssl_derm.data.splits import class_weights, label_fraction, make_splits, read_splits, write_splits
from ssl_derm.data.transforms import Augment, ImagePipeline, Normalize, to_float, train_augment, two_view_augment

__all__ = [
    "Augment",
    "BankDataset",
    "Decoded",
    "FileList",
    "ImageBank",
    "ImagePipeline",
    "ImageSource",
    "Normalize",
    "class_weights",
    "decode_source",
    "default_cache_dir",
    "label_fraction",
    "load_labeled",
    "make_loader",
    "make_splits",
    "open_unlabeled",
    "read_splits",
    "sample_dir",
    "sample_unlabeled",
    "to_float",
    "train_augment",
    "two_view_augment",
    "write_splits",
]
