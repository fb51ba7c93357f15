"""The lesion-segmentation model of ``ssl-derm finetune --target segmentation`` (its run,
evaluation and prediction files: ``finetune/targets/segmentation.py``).

A U-Net (segmentation-models-pytorch) whose encoder comes from ``--init`` and,
when the init carries a U-Net decoder (a context-restoration ``ssl.ckpt``, a
multitask one with a context-restoration part, or a segmenter ``model.ckpt``)
and ``init_decoder`` is on, whose decoder starts from it too (Chen et al.
2019: context restoration trains the decoder that segmentation needs).  The
decoder is built with the same settings as context restoration's U-Net
(smp's defaults), so the restored decoder loads with strict keys; the
segmentation head (one output channel, lesion logits) is new.

Loss: Dice (smp, binary, from logits) + BCE.  The best epoch is the one with
the highest mean per-image validation Dice.  ``model.ckpt`` holds the task
``segmenter``: encoder, decoder and head state dicts, plus the same
``seen_images`` / ``split_images`` records as a classifier.

Mask conventions: a pixel is lesion where the mask is >= 128 (of 255) or the
predicted probability is > 0.5; an image whose true and predicted masks are
both empty scores Dice = Jaccard = 1 (``finetune.metrics.scores_from_counts``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
from torch import nn

from ssl_derm.checkpoint import load_checkpoint
from ssl_derm.data import ImagePipeline
from ssl_derm.encoders import build_encoder, encoder_spec, load_strict
from ssl_derm.engine import step_generator
from ssl_derm.errors import UserError
from ssl_derm.files import safe_name
from ssl_derm.finetune.classifier import EncoderFinetuneModule, dihedral, record_epoch
from ssl_derm.finetune.metrics import mask_counts, scores_from_counts, segmentation_metrics

TASK = "segmenter"
PREVIEW = 8  # images in the TensorBoard overlay grid


# ---------------------------------------------------------------- the model


class Segmenter(nn.Module):
    """smp U-Net on an ssl-derm encoder: ``forward`` gives ``[B, 1, H, W]`` lesion logits."""

    def __init__(self, encoder_name: str, encoder: nn.Module) -> None:
        super().__init__()
        # the same constructor arguments as context restoration's U-Net (pretext/context_restore.py)
        # but one output channel: its decoder's state dict fits this one's exactly
        self.unet = smp.Unet(encoder_spec(encoder_name).smp_name, encoder_weights=None, classes=1, activation=None)
        self.unet.encoder = encoder

    @property
    def encoder(self) -> nn.Module:
        return self.unet.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.unet.decoder

    @property
    def segmentation_head(self) -> nn.Module:
        return self.unet.segmentation_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)


def init_decoder_state(ckpt: dict) -> dict | None:
    """The U-Net decoder a checkpoint carries: context restoration's (also as a multitask
    part) or a segmenter's; None when it has none."""
    if "decoder_state_dict" in ckpt:
        return ckpt["decoder_state_dict"]
    parts = [p["decoder_state_dict"] for p in (ckpt.get("parts") or {}).values() if "decoder_state_dict" in p]
    return parts[0] if len(parts) == 1 else None


def has_decoder(init: str) -> bool:
    """Whether ``init`` (random, imagenet or a checkpoint) carries a U-Net decoder."""
    if init in ("random", "imagenet"):
        return False
    return init_decoder_state(load_checkpoint(init)) is not None


def build_segmenter(encoder_name: str, init: str, init_decoder: bool = True) -> tuple[Segmenter, str | None]:
    """A ``Segmenter`` with its encoder from ``init``; its decoder too when ``init_decoder``
    and the init has one (a segmenter's head as well). Returns the model and the path the
    decoder came from (None: a randomly initialised decoder)."""
    model = Segmenter(encoder_name, build_encoder(encoder_name, init))
    if init in ("random", "imagenet") or not init_decoder:
        return model, None
    ckpt = load_checkpoint(init)
    state = init_decoder_state(ckpt)
    if state is None:
        return model, None
    load_strict(model.decoder, state, f"{init} (decoder)")
    if ckpt.get("task") == TASK and "segmentation_head_state_dict" in ckpt:
        load_strict(model.segmentation_head, ckpt["segmentation_head_state_dict"], f"{init} (segmentation head)")
    return model, str(init)


def load_segmenter(path: str | Path, ckpt: dict | None = None) -> tuple[Segmenter, dict]:
    """A fine-tuned segmenter (``model.ckpt`` of ``finetune --target segmentation``), strict keys."""
    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    if ckpt["task"] != TASK or "decoder_state_dict" not in ckpt:
        raise UserError(f"{path}: a {ckpt['task']!r} checkpoint, not a fine-tuned segmenter")
    model = Segmenter(ckpt["encoder_name"], build_encoder(ckpt["encoder_name"], "random"))
    load_strict(model.encoder, ckpt["encoder_state_dict"], f"{path} (encoder)")
    load_strict(model.decoder, ckpt["decoder_state_dict"], f"{path} (decoder)")
    load_strict(model.segmentation_head, ckpt["segmentation_head_state_dict"], f"{path} (segmentation head)")
    return model.eval(), ckpt


def _undo_dihedral(views: list[torch.Tensor]) -> list[torch.Tensor]:
    """Map predictions on ``dihedral(x)`` back onto ``x``'s pixel grid."""
    out = []
    for k, v in enumerate(views):
        if k >= 4:
            v = v.flip(3)
        out.append(torch.rot90(v, -(k % 4), dims=(2, 3)))
    return out


@torch.inference_mode()
def predict_masks(
    model: nn.Module, images, pipeline: ImagePipeline, device, batch_size: int = 64, tta: bool = False
) -> np.ndarray:
    """Lesion probabilities float32 ``[N, S, S]`` for uint8 ``images``, in eval mode.
    ``tta``: the mean over the 8 flips and 90-degree rotations, each mapped back."""
    model.eval().to(device, memory_format=torch.channels_last)
    pipeline = pipeline.to(device)
    out = []
    for i in range(0, len(images), batch_size):
        x = pipeline(images[i : i + batch_size].to(device))
        views = dihedral(x) if tta else [x]
        probs = [torch.sigmoid(model(v.contiguous(memory_format=torch.channels_last)).float()) for v in views]
        if tta:
            probs = _undo_dihedral(probs)
        out.append((sum(probs) / len(probs))[:, 0].cpu())
    s = int(images.shape[-1]) if len(images) else 0
    return torch.cat(out).numpy() if out else np.zeros((0, s, s), np.float32)


# ---------------------------------------------------------------- pictures


def overlay_grid(images: torch.Tensor, masks: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``[3, H', W']`` in [0, 1]: one row per image: the image | its true mask in green |
    the predicted mask (probability > 0.5) in red. ``images`` float [0, 1] ``[B, 3, S, S]``,
    ``masks`` and ``probs`` ``[B, 1, S, S]``."""
    from torchvision.utils import make_grid

    images = images.float().cpu().clamp(0, 1)
    green = torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)

    def tint(mask, colour):
        m = mask.float().cpu()
        return images * (1 - 0.45 * m) + colour * 0.45 * m

    tiles = torch.stack([images, tint(masks, green), tint(probs > 0.5, red)], 1).flatten(0, 1)
    return make_grid(tiles, nrow=3, padding=2, pad_value=1.0)


def log_overlays(logger, tag: str, images, masks, probs, step: int) -> None:
    writer = getattr(logger, "experiment", None)
    if writer is not None and hasattr(writer, "add_image"):
        writer.add_image(tag, overlay_grid(images, masks, probs), step)


# ---------------------------------------------------------------- training


class SegmentationModule(EncoderFinetuneModule):
    """Dice + BCE on lesion masks; one augmentation draw moves image and mask alike."""

    def __init__(self, model: Segmenter, cfg, normalization: dict, steps_per_epoch: int) -> None:
        super().__init__(model, cfg, normalization, steps_per_epoch)
        self.dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)
        self.bce = nn.BCEWithLogitsLoss()
        self._val: list[torch.Tensor] = []
        self._preview: tuple | None = None

    def head_parameters(self) -> list[nn.Parameter]:
        # decoder and segmentation head at lr, transferred or not: the comparison is about the init alone
        return list(self.model.decoder.parameters()) + list(self.model.segmentation_head.parameters())

    def export_model(self) -> Segmenter:
        import copy

        return copy.deepcopy(self.eval_model()).cpu()

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, masks = batch
        training = self.trainer is not None and self.trainer.training
        # the augmentation's draws from (seed, rank, step): a resumed run augments alike
        gen = step_generator(self.cfg.seed, 13, self.global_rank, self.global_step) if training else None
        return self.pipeline.pair(images, masks, train=training, generator=gen)

    def losses(self, logits: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.float()
        return self.dice_loss(logits, masks), self.bce(logits, masks)

    def training_step(self, batch, batch_idx):
        x, y = batch
        dice, bce = self.losses(self.model(x), y)
        loss = dice + bce  # a non-finite loss: FiniteLossGuard
        # progress-bar metrics are read back every step: a GPU sync, so only with a bar to show
        self.log("train/loss", loss, prog_bar=self.cfg.progress)
        self.log("train/dice_loss", dice)
        self.log("train/bce", bce)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.eval_model()(x)
        dice, bce = self.losses(logits, y)
        self.log("val/loss", dice + bce, sync_dist=True, batch_size=len(y))
        probs = torch.sigmoid(logits.float())
        self._val.append(torch.as_tensor(mask_counts(probs > 0.5, y > 0.5), device=self.device))
        if batch_idx == 0:
            n = min(PREVIEW, len(x))
            self._preview = (self.pipeline.denormalize(x[:n]).cpu(), y[:n].cpu(), probs[:n].cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        counts = torch.cat(self._val)
        self._val.clear()
        if self.trainer.world_size > 1:
            counts = self.all_gather(counts).flatten(0, 1)
        scores = scores_from_counts(counts.cpu().numpy())
        self.log("val/dice", float(scores["dice"].mean()), prog_bar=True)
        record_epoch(self, dice=float(scores["dice"].mean()))
        self.log("val/jaccard", float(scores["jaccard"].mean()))
        self.log("val/jaccard_thresholded", float(scores["jaccard_thresholded"].mean()))
        self.log("val/pixel_accuracy", float(scores["pixel_accuracy"].mean()))
        if self._preview is not None and self.trainer.is_global_zero:
            log_overlays(self.logger, "val/overlays", *self._preview, self.global_step)
        self._preview = None


# ---------------------------------------------------------------- output files


def safe_stem(text: str, taken: set[str], limit: int = 80) -> str:
    """A file name stem from ``text`` (an image's name): [A-Za-z0-9_.-] only, never ``.``
    or ``..``, made unique among ``taken`` (which it joins)."""
    stem = safe_name(Path(text).stem, limit)
    name, k = stem, 2
    while name in taken:
        name, k = f"{stem}-{k}", k + 1
    taken.add(name)
    return name


__all__ = [
    "Segmenter",
    "SegmentationModule",
    "build_segmenter",
    "has_decoder",
    "load_segmenter",
    "predict_masks",
    "segmentation_metrics",
]
