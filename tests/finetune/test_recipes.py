"""Fine-tuning recipes on real images: frozen blocks, mixup/CutMix with soft focal
targets, EMA of the weights, post-hoc logit adjustment."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_derm.cli import main
from ssl_derm.config import FinetuneConfig
from ssl_derm.encoders import build_encoder, encoder_spec, encoder_stages
from ssl_derm.errors import UserError
from ssl_derm.finetune.classifier import Classifier, FinetuneModule
from ssl_derm.finetune.losses import focal_loss
from ssl_derm.finetune.mixing import mix_batch

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]
LITE0 = encoder_spec("efficientnet-lite0").normalization


def test_soft_targets_are_the_expectation_of_the_hard_loss():
    torch.manual_seed(0)
    logits, alpha = torch.randn(6, 7), torch.rand(7) + 0.5
    a, b = torch.randint(7, (6,)), torch.randint(7, (6,))
    lam = 0.3
    soft = lam * torch.nn.functional.one_hot(a, 7) + (1 - lam) * torch.nn.functional.one_hot(b, 7)
    for gamma in (0.0, 2.0):
        hard = [focal_loss(logits, t, gamma, alpha, reduction="none") for t in (a, b)]
        mixed = focal_loss(logits, soft.float(), gamma, alpha, reduction="none")
        assert torch.allclose(mixed, lam * hard[0] + (1 - lam) * hard[1], atol=1e-6)


@pytest.mark.parametrize("mixup, cutmix", [(0.4, 0.0), (0.0, 1.0)])
def test_mixed_targets_sum_to_one_and_match_the_pixels(sample_images, mixup, cutmix):
    x, y = sample_images[:8], torch.arange(8)  # one label per image: the targets tell the partners
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    mixed, target = mix_batch(x, y, 8, mixup, cutmix, gen())
    again, _ = mix_batch(x, y, 8, mixup, cutmix, gen())
    assert torch.equal(mixed, again)  # replayable from the generator
    assert torch.allclose(target.sum(1), torch.ones(8))
    own = target[torch.arange(8), y]  # the share of its own label each image keeps
    if mixup:
        # each mixed image is own * x + (1 - own) * partner: the residual vanishes for some partner
        for i in range(8):
            residual = [(mixed[i] - own[i] * x[i] - (1 - own[i]) * x[j]).abs().max() for j in range(8)]
            assert min(residual) < 1e-5
    else:
        kept = (mixed == x).all(1).float().mean((1, 2))  # share of pixels left as they were
        moved = kept < 1
        assert moved.any() and torch.allclose(own[moved], kept[moved], atol=0.02)


def test_frozen_blocks_stay_bit_identical_and_too_many_are_refused(tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "--init", "imagenet", "--out", str(out), "--max-steps", "3", "--freeze-blocks", "2", *TINY]
    assert main([*args, "--mixup", "0.2", "--cutmix", "1.0"]) == 0
    trained = torch.load(out / "model.ckpt", weights_only=True)["encoder_state_dict"]
    start = build_encoder("efficientnet-lite0", "imagenet")
    names = {id(p): n for n, p in [*start.named_parameters(), *start.named_buffers()]}
    frozen = [names[id(t)] for _, ms in encoder_stages(start)[:2] for m in ms for t in [*m.parameters(), *m.buffers()]]
    state = start.state_dict()
    assert frozen and all(torch.equal(trained[n], state[n]) for n in frozen)
    later = [n for n in state if n.startswith("model.blocks.3.") and state[n].is_floating_point()]
    assert any(not torch.equal(trained[n], state[n]) for n in later)  # the rest trained
    with pytest.raises(UserError, match=r"freeze_blocks=9: this encoder has 8 stages \(stem, blocks.0"):
        FinetuneModule(
            Classifier(build_encoder(), 7),
            FinetuneConfig(freeze_blocks=9, image_size=64),
            LITE0,
            list("abcdefg"),
            None,
            1,
        )


def test_ema_weights_are_validated_and_exported(sample_images):
    cfg = FinetuneConfig(ema=0.5, image_size=64)
    module = FinetuneModule(Classifier(build_encoder(), 7, dropout=0.0), cfg, LITE0, list("abcdefg"), None, 1)
    opt = torch.optim.SGD(module.model.parameters(), lr=0.5)
    x, y = module.pipeline(sample_images[:8]), torch.arange(8) % 7
    snapshots = [module.model.head[-1].weight.detach().clone()]
    for _ in range(2):
        loss = module.loss(module.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        module.on_train_batch_end(None, None, 0)
        snapshots.append(module.model.head[-1].weight.detach().clone())
    # AveragedModel: the first update copies, later ones average with decay 0.5
    expected = 0.5 * snapshots[1] + 0.5 * snapshots[2]
    assert torch.allclose(module.eval_model().head[-1].weight, expected, atol=1e-6)
    assert torch.allclose(module.export_model().head[-1].weight, expected, atol=1e-6)
    assert not torch.allclose(module.export_model().head[-1].weight, snapshots[2])


def test_logit_adjustment_is_folded_into_the_exported_head():
    prior = np.array([0.7, 0.2, 0.1])
    cfg = FinetuneConfig(logit_adjust=1.0, image_size=64)
    module = FinetuneModule(Classifier(build_encoder(), 3), cfg, LITE0, ["nv", "mel", "bcc"], None, 1, prior)
    raw = module.model.head[-1].bias.detach().clone()
    shifted = module.export_model().head[-1].bias
    assert torch.allclose(shifted, raw - torch.log(torch.tensor(prior, dtype=torch.float32)))
    assert torch.equal(module.model.head[-1].bias, raw)  # training weights untouched


def test_two_stage_probabilities_sum_to_one_and_match_the_stages(sample_images):
    model = Classifier(build_encoder(), 7, dropout=0.0, two_stage_first=4).eval()
    pipeline = FinetuneModule(model, FinetuneConfig(image_size=64), LITE0, list("abcdefg"), None, 1).pipeline
    images = pipeline(sample_images[:6])
    with torch.no_grad():
        probs = model(images).softmax(1)
        from ssl_derm.encoders import pooled_features

        l1, l2 = model.head.stages(pooled_features(model.encoder, images))
    p1, p2 = l1.softmax(1), l2.softmax(1)
    assert torch.allclose(probs.sum(1), torch.ones(6), atol=1e-6)
    assert torch.allclose(probs[:, 4], p1[:, 0], atol=1e-6)
    others = [0, 1, 2, 3, 5, 6]
    assert torch.allclose(probs[:, others], p1[:, 1:2] * p2, atol=1e-6)


def test_two_stage_trains_evaluates_and_names_a_missing_class(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--init", "imagenet", "--out", str(out), "--max-steps", "3", "--two-stage", *TINY]) == 0
    ckpt = torch.load(out / "model.ckpt", weights_only=True)
    assert ckpt["two_stage_first"] == ckpt["class_names"].index("nv")
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["confusion_matrix"]["labels"]) == 7
    ev = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(out / "model.ckpt"), "--out", str(ev)]) == 0
    probs = pd.read_csv(ev / "predictions.csv").filter(like="prob_")
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    bad = ["finetune", "--out", str(tmp_path / "bad"), "--two-stage", "--set", "two_stage_class=cat", *TINY]
    assert main(bad) == 2
    assert "two_stage_class='cat' is not a class" in capsys.readouterr().err


def test_sequential_chain_coarse_task_then_seven_classes_with_frozen_blocks(tmp_path):
    """The README's worked chain: benign/malignant first, then the 7 diagnoses on the same split."""
    assert main(["data", "split", "--out", str(tmp_path / "split")]) == 0
    table = pd.read_csv(tmp_path / "split" / "splits.csv")
    table["label"] = np.where(table["label"].isin(["mel", "bcc", "akiec"]), "malignant", "benign")
    table.to_csv(tmp_path / "coarse.csv", index=False)
    coarse = tmp_path / "coarse"
    args = ["finetune", "--init", "imagenet", "--data", str(tmp_path / "coarse.csv"), "--out", str(coarse)]
    assert main([*args, "--max-steps", "2", *TINY]) == 0
    seven = tmp_path / "seven"
    args = ["finetune", "--init", str(coarse / "model.ckpt"), "--splits", str(tmp_path / "split" / "splits.csv")]
    assert main([*args, "--freeze-blocks", "3", "--out", str(seven), "--max-steps", "2", *TINY]) == 0
    first, second = (torch.load(p / "model.ckpt", weights_only=True) for p in (coarse, seven))
    assert len(first["class_names"]) == 2 and len(second["class_names"]) == 7
    assert torch.equal(
        first["encoder_state_dict"]["model.conv_stem.weight"], second["encoder_state_dict"]["model.conv_stem.weight"]
    )
