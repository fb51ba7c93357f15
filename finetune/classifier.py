"""The classifier (encoder + pooling, dropout, linear head) and its LightningModule."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from ssl_derm.data import ImagePipeline, train_augment
from ssl_derm.encoders import encoder_stages, feature_dim, pooled_features
from ssl_derm.engine import cosine_schedule, step_generator
from ssl_derm.errors import UserError
from ssl_derm.finetune.losses import FocalLoss
from ssl_derm.finetune.metrics import classification_metrics
from ssl_derm.finetune.mixing import mix_batch


class TwoStageHead(nn.Module):
    """Two classifiers on one feature vector: stage 1 tells class ``first`` from the rest,
    stage 2 tells the other classes apart among the rest. ``forward`` combines them into
    K-class log-probabilities, ``log p(first) = log p1(first)`` and ``log p(k) =
    log p1(rest) + log p2(k | rest)``, so a softmax of the output gives probabilities
    that sum to one and every metric, ``evaluate`` and the benchmark work unchanged."""

    def __init__(self, dim: int, num_classes: int, first: int, dropout: float = 0.2) -> None:
        super().__init__()
        if not (0 <= first < num_classes) or num_classes < 3:
            raise ValueError(
                f"two-stage head: need >= 3 classes and 0 <= first < K, got first={first}, K={num_classes}"
            )
        self.first = first
        self.register_buffer("others", torch.tensor([k for k in range(num_classes) if k != first]), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.stage1 = nn.Linear(dim, 2)  # [first, rest]
        self.stage2 = nn.Linear(dim, num_classes - 1)  # the other classes, in order

    def stages(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.dropout(features)
        return self.stage1(f), self.stage2(f)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        l1, l2 = self.stages(features)
        lp1, lp2 = torch.log_softmax(l1.float(), 1), torch.log_softmax(l2.float(), 1)
        out = lp1.new_empty(features.shape[0], len(self.others) + 1)
        out[:, self.first] = lp1[:, 0]
        out[:, self.others] = lp1[:, 1:2] + lp2
        return out


class Classifier(nn.Module):
    """Encoder + global pooling + head: dropout and a linear layer, or a ``TwoStageHead``
    when ``two_stage_first`` names the first stage's class index."""

    def __init__(
        self, encoder: nn.Module, num_classes: int, dropout: float = 0.2, two_stage_first: int | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.two_stage_first = two_stage_first
        if two_stage_first is None:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim(encoder), num_classes))
        else:
            self.head = TwoStageHead(feature_dim(encoder), num_classes, two_stage_first, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_features(self.encoder, x))


def dihedral(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and 90-degree rotations of a square ``[B, C, S, S]`` batch, identity first.
    Dermoscopy has no "up", so each is as valid a view of the lesion as the original."""
    rots = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    return rots + [r.flip(3) for r in rots]


def predict_proba(
    model: nn.Module,
    images,
    pipeline: ImagePipeline,
    device,
    batch_size: int = 128,
    tta: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Softmax probabilities for uint8 ``images`` (tensor or bank gather), in eval mode.
    ``tta``: the mean probability over the 8 ``dihedral`` views of each image."""
    from tqdm.auto import tqdm

    # moved outside inference mode: parameters converted inside it would become inference
    # tensors, which a later backward pass (training, Grad-CAM) refuses
    model.eval().to(device, memory_format=torch.channels_last)
    pipeline = pipeline.to(device)
    out = []
    starts = range(0, len(images), batch_size)
    with torch.inference_mode():
        for i in tqdm(starts, desc="predicting", unit="batch", disable=not progress, leave=False):
            x = pipeline(images[i : i + batch_size].to(device))
            views = dihedral(x) if tta else [x]
            p = sum(torch.softmax(model(v.contiguous(memory_format=torch.channels_last)).float(), 1) for v in views)
            out.append((p / len(views)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def frozen_stages(encoder: nn.Module, n: int) -> list[nn.Module]:
    """The modules of the encoder's first ``n`` stages (``encoder_stages``)."""
    stages = encoder_stages(encoder)
    if n > len(stages):
        names = ", ".join(name for name, _ in stages)
        raise UserError(f"freeze_blocks={n}: this encoder has {len(stages)} stages ({names})")
    return [m for _, modules in stages[:n] for m in modules]


class EncoderFinetuneModule(pl.LightningModule):
    """What fine-tuning an encoder under a task head shares, whatever the head: the device-side
    image pipeline, the frozen encoder (``--linear-probe``, ``--freeze-epochs``), the stages
    that never train (``--freeze-blocks``, BatchNorm statistics included), ``--freeze-bn``,
    the EMA of weights (``--ema``) and AdamW with the head at ``lr`` and the encoder at
    ``encoder_lr``. Subclasses name their head's parameters (``head_parameters``)."""

    def __init__(self, model: nn.Module, cfg, normalization: dict, steps_per_epoch: int) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        fused = cfg.augmentation == "fused"
        self.pipeline = ImagePipeline(
            normalization, train_augment(cfg.image_size, fused=fused) if cfg.augment else None
        )
        self.steps_per_epoch = steps_per_epoch
        self.val_history: list[dict] = []  # one row per validation epoch, for metrics.json
        if cfg.linear_probe:  # frozen before any DDP wrapper is built, so DDP never waits for its gradients
            self.model.encoder.requires_grad_(False)
        # --freeze-blocks: these stages never train, BatchNorm statistics included
        self.frozen = frozen_stages(self.model.encoder, cfg.freeze_blocks)
        for m in self.frozen:
            m.requires_grad_(False)
        self.ema = None
        if cfg.ema > 0:  # validated and kept instead of the raw weights
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
            self.ema.requires_grad_(False)

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters trained at ``lr``: all but the encoder's."""
        raise NotImplementedError

    def eval_model(self) -> nn.Module:
        """The weights that are validated and exported: the EMA when ``--ema`` is set."""
        return self.ema.module if self.ema is not None else self.model

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def encoder_frozen(self) -> bool:
        return self.cfg.linear_probe or self.current_epoch < self.cfg.freeze_epochs

    def on_train_epoch_start(self) -> None:
        frozen = self.encoder_frozen()
        self.model.encoder.requires_grad_(not frozen)
        # A frozen encoder keeps its BatchNorm statistics too (eval mode); once it thaws it
        # trains in train mode, statistics included, unless freeze_bn keeps them all run long.
        self.model.encoder.train(not frozen)
        if self.cfg.freeze_bn:
            for m in self.model.encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for m in self.frozen:
            m.requires_grad_(False)
            m.eval()

    def configure_optimizers(self):
        groups = [{"params": self.head_parameters(), "lr": self.cfg.lr}]
        if not self.cfg.linear_probe:
            never = {id(p) for m in self.frozen for p in m.parameters()}
            encoder = [p for p in self.model.encoder.parameters() if id(p) not in never]
            groups.append({"params": encoder, "lr": self.cfg.encoder_lr})
        opt = torch.optim.AdamW(groups, weight_decay=self.cfg.weight_decay)
        return cosine_schedule(opt, self.cfg, self.steps_per_epoch)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["val_history"] = self.val_history  # a resumed run keeps its curve

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.val_history = list(checkpoint.get("val_history", []))


def record_epoch(module: EncoderFinetuneModule, **scores: float) -> None:
    """Append this validation epoch's ``scores`` (counted from 1, like ``best_epoch``) to
    ``module.val_history``, which metrics.json keeps: the validation curve outlives the
    TensorBoard log. Lightning's sanity check before training is not an epoch."""
    if not module.trainer.sanity_checking:
        module.val_history.append({"epoch": module.current_epoch + 1, **{k: float(v) for k, v in scores.items()}})


class FinetuneModule(EncoderFinetuneModule):
    """Focal loss (or two-stage losses), mixup/CutMix and post-hoc logit adjustment."""

    def __init__(
        self,
        model: Classifier,
        cfg,
        normalization: dict,
        classes: list[str],
        alpha: np.ndarray | None,
        steps_per_epoch: int,
        prior: np.ndarray | None = None,
        stage_alpha: tuple[np.ndarray | None, np.ndarray | None] | None = None,
    ) -> None:
        super().__init__(model, cfg, normalization, steps_per_epoch)
        self.classes = classes
        self.loss = FocalLoss(cfg.focal_gamma, None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))
        self.stage_losses = None
        if model.two_stage_first is not None:  # one focal loss per stage, each with its own class weights
            a1, a2 = stage_alpha if stage_alpha is not None else (None, None)
            self.stage_losses = nn.ModuleList(
                [
                    FocalLoss(cfg.focal_gamma, None if a is None else torch.as_tensor(a, dtype=torch.float32))
                    for a in (a1, a2)
                ]
            )
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        # Post-hoc logit adjustment (Menon et al. 2021): logits - tau * log(prior of the training
        # split) favour rare classes by exactly what balanced error asks; no effect on training.
        offset = torch.zeros(len(classes))
        if cfg.logit_adjust > 0 and prior is not None:
            offset = -cfg.logit_adjust * torch.log(torch.as_tensor(prior, dtype=torch.float32).clamp_min(1e-12))
        self.register_buffer("logit_offset", offset)

    def step_generator(self) -> torch.Generator:
        """Mixing draws of this rank at this step, from (seed, rank, step): a resumed run mixes alike."""
        return step_generator(self.cfg.seed, 7, self.global_rank, self.global_step)

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.model.head.parameters())

    def export_model(self) -> Classifier:
        """``eval_model`` with the logit adjustment folded into the head's bias, so that
        ``model.ckpt`` and every later command score what validation chose."""
        import copy

        model = copy.deepcopy(self.eval_model()).cpu()
        if self.logit_offset.any():  # (two-stage heads are refused with logit_adjust)
            with torch.no_grad():
                model.head[-1].bias.add_(self.logit_offset.cpu())
        return model

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return self.pipeline(images, train=training), labels

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.cfg.mixup > 0 or self.cfg.cutmix > 0:
            x, y = mix_batch(x, y, len(self.classes), self.cfg.mixup, self.cfg.cutmix, self.step_generator())
        if self.stage_losses is not None:
            loss = self.two_stage_loss(x, y)
        else:
            loss = self.loss(self.model(x), y)  # a non-finite loss: FiniteLossGuard
        # progress-bar metrics are read back every step: a GPU sync, so only with a bar to show
        self.log("train/loss", loss, prog_bar=self.cfg.progress)
        return loss

    def two_stage_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Stage 1 on every image (first class or not), stage 2 on the others only."""
        head = self.model.head
        l1, l2 = head.stages(pooled_features(self.model.encoder, x))
        rest = y != head.first
        loss = self.stage_losses[0](l1, rest.long())
        if not rest.any():  # a batch of first-class images only: stage 2 still joins the graph (DDP)
            return loss + 0.0 * l2.sum()
        index = torch.full((len(self.classes),), -1, dtype=torch.long, device=y.device)
        index[head.others] = torch.arange(len(head.others), device=y.device)
        return loss + self.stage_losses[1](l2[rest], index[y[rest]])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.eval_model()(x)
        self.log("val/loss", self.loss(logits, y), sync_dist=True, batch_size=len(y))
        logits = logits + self.logit_offset.to(logits)
        self._val.append((logits.float().softmax(1), y))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        probs = torch.cat([p for p, _ in self._val])
        labels = torch.cat([y for _, y in self._val])
        self._val.clear()
        if self.trainer.world_size > 1:
            probs = self.all_gather(probs).flatten(0, 1)
            labels = self.all_gather(labels).flatten(0, 1)
        m = classification_metrics(labels.cpu().numpy(), probs.cpu().numpy(), self.classes)
        self.log("val/balanced_accuracy", m["balanced_accuracy"], prog_bar=True)
        self.log("val/macro_f1", m["macro_f1"])
        record_epoch(self, balanced_accuracy=m["balanced_accuracy"], macro_f1=m["macro_f1"])
        if m["auc_macro"] is not None:
            self.log("val/auc_macro", m["auc_macro"])
        self.last_val_metrics = m
