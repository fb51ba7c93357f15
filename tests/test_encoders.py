import socket

import numpy as np
import pytest
import torch

from ssl_derm.encoders import ENCODERS, build_encoder, feature_dim, imagenet_lite0_classifier, pooled_features
from ssl_derm.errors import UserError


def test_default_encoder_features():
    enc = build_encoder()
    feats = enc(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in feats] == list(enc.out_channels)
    assert pooled_features(enc, torch.rand(2, 3, 64, 64)).shape == (2, feature_dim(enc)) == (2, 320)


def test_imagenet_lite0_classifies_a_real_cat():
    from skimage import data as skimage_data  # the dev extra installs it; a missing one fails, never skips

    img = torch.from_numpy(skimage_data.chelsea().copy()).permute(2, 0, 1).float()[None] / 255  # a tabby cat
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    logits = imagenet_lite0_classifier()((img - 0.5) / 0.5)
    top5 = logits.topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286), top5  # ImageNet 281-285: domestic cats


def test_imagenet_encoder_weights_come_from_the_offline_file():
    enc = build_encoder("efficientnet-lite0", "imagenet")
    ref = imagenet_lite0_classifier().state_dict()
    np.testing.assert_array_equal(enc.model.conv_stem.weight.detach().numpy(), ref["conv_stem.weight"].numpy())
    assert not torch.equal(build_encoder().model.conv_stem.weight, enc.model.conv_stem.weight)


def test_imagenet_for_other_encoders_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(UserError, match="could not be fetched.*hub cache"):
        build_encoder("resnet18", "imagenet")


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(UserError, match="valid: " + ", ".join(ENCODERS)):
        build_encoder("vgg11")
