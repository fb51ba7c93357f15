"""The Lightning Trainer factory shared by every training command.

One place sets devices, precision, DDP, the TensorBoard logger, atomic and
resumable trainer checkpoints, learning-rate and throughput logging.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, Checkpoint, LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.trainer.states import TrainerFn

from ssl_derm.errors import UserError
from ssl_derm.files import atomic_write

RUN_DIR_ENV = "SSL_DERM_RUN_DIR"  # set by rank 0 so DDP workers use the same run folder


class RunFailed(Exception):
    """A run that cannot go on (e.g. a non-finite loss): one clear line, exit code 1."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Trainer checkpoints are written to a temporary file, then renamed."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        # The trainer checkpoint is our own file, but still never executes code.
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class LastCheckpoint(Checkpoint):
    """Keeps ``last.ckpt`` (the trainer state for ``--resume``) fresh: after every
    epoch and every N steps, so a kill loses at most N steps.

    A ``Checkpoint``, so Lightning runs it after every other callback, ``ModelCheckpoint``
    included: the state it saves at an epoch's end already holds that epoch's early-stopping
    check and best-epoch record, and a resumed run goes on from exactly there."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every > 0 and trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path)


class FiniteLossGuard(Callback):
    """Stops a run whose training loss went non-finite before anything saves its weights.

    The loss is tested on the device every step, but read back (one GPU sync) only every
    ``every`` steps, at every ``checkpoint_every``-th step (``LastCheckpoint``'s), before
    validation (``best.ckpt``), at the end of each epoch (``last.ckpt``, ``ssl.ckpt``) and at
    the end of training. Reading it every step stalled a GPU behind the Python feeding it.
    Listed first among the callbacks, so it runs before those that save."""

    def __init__(self, every: int, checkpoint_every: int = 0) -> None:
        self.every, self.checkpoint_every = max(1, every), checkpoint_every
        self._first: torch.Tensor | None = None  # on the device: the first bad step, or -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            bad = ~torch.isfinite(loss.detach()).all()
            if self._first is None:
                self._first = torch.full((), -1, dtype=torch.long, device=loss.device)
            step = trainer.global_step - 1  # the step this batch took
            self._first = torch.where(bad & (self._first < 0), step, self._first)
        n = trainer.global_step  # checked on every rank alike, loss or not (DDP)
        if n % self.every == 0 or (self.checkpoint_every > 0 and n % self.checkpoint_every == 0):
            self.check(pl_module)

    def on_validation_start(self, trainer, pl_module) -> None:
        # validation inside fit (trainer.training is False by then): before a NaN model is
        # scored or saved as best.ckpt
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.check(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.check(pl_module)

    def check(self, pl_module) -> None:
        first = -1 if self._first is None else int(self._first.item())
        if stop_on_any_rank(pl_module, first >= 0):
            where = f"at step {first}" if first >= 0 else "on another rank"
            raise RunFailed(f"non-finite training loss {where}; lower --lr (the last good checkpoint is kept)")


class Throughput(Callback):
    """Logs ``train/images_per_s`` measured over the logging interval."""

    def __init__(self) -> None:
        self._t = 0.0
        self._n = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._t == 0.0:
            self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._n += images.shape[0] * trainer.world_size
        if (trainer.global_step % trainer.log_every_n_steps) == 0:
            now = time.perf_counter()
            if now > self._t and self._n:
                pl_module.log("train/images_per_s", self._n / (now - self._t), rank_zero_only=True)
            self._t, self._n = now, 0


def run_dir(out: str | None, command: str, overwrite: bool = False, resume: bool = False) -> Path:
    """The run folder: ``out`` or ``runs/<command>-<timestamp>``; never clobbers silently."""
    if _is_worker():  # a DDP worker: rank 0 already checked and created the folder
        path = Path(os.environ.get(RUN_DIR_ENV) or out or ".")
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(out) if out else Path("runs") / f"{command}-{datetime.now():%Y%m%d-%H%M%S}"
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise UserError(
            f"--out {path}: folder is not empty; pass --overwrite to replace its contents "
            "or --resume to continue the run"
        )
    if overwrite and path.is_dir() and not resume:
        _clear(path)
    path.mkdir(parents=True, exist_ok=True)
    if resume:  # a kill during a save leaves its temporary file; the renamed target is always whole
        for stale in path.rglob(".*.tmp"):
            stale.unlink()
    os.environ[RUN_DIR_ENV] = str(path.resolve())
    return path


def _is_worker() -> bool:
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def _clear(path: Path) -> None:
    import shutil

    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def open_run(cfg, command: str, overwrite: bool, resume: bool):
    """What every training run does first: the encoder's settings resolved, the run folder
    (``run_dir``) with the settings in ``config.yaml`` (a resume must keep the data settings it
    started with), and the seed. Returns the resolved settings and the folder."""
    from ssl_derm.config import check_resume_settings, save_yaml
    from ssl_derm.encoders import resolve_encoder_settings

    cfg = resolve_encoder_settings(cfg)
    out = run_dir(cfg.out, command, overwrite, resume)
    if resume:
        check_resume_settings(cfg, out / "config.yaml")
    save_yaml(cfg, out / "config.yaml")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    return cfg, out


def resume_path(out: Path, resume: bool) -> str | None:
    if not resume:
        return None
    last = out / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise UserError(f"--resume: no trainer checkpoint at {last}")
    return str(last)


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*predict_dataloader.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # lightly's scheduler warns when a resumed run is given more epochs; the LR then stays at its floor.
    warnings.filterwarnings("ignore", message="Current step number .* exceeds max_steps", category=RuntimeWarning)


def make_trainer(
    cfg,
    out: Path,
    *,
    callbacks: list[Callback] | None = None,
    checkpoint_every_n_steps: int = 200,
    enable_val: bool = True,
    steps_per_epoch: int | None = None,
    find_unused_parameters: bool = False,
    min_epochs: int | None = None,
    val_every_n_epochs: int = 1,
) -> pl.Trainer:
    """A Trainer for ``cfg`` (an EngineConfig) writing everything under ``out``."""
    quiet_lightning()
    devices = cfg.devices if cfg.devices == "auto" else int(cfg.devices)
    multi = cfg.num_nodes > 1 or (isinstance(devices, int) and devices > 1)
    strategy = cfg.strategy if cfg.strategy != "auto" or not multi else "ddp"
    if find_unused_parameters and strategy == "auto" and devices in ("auto", -1) and torch.cuda.device_count() > 1:
        strategy = "ddp"  # what Lightning would pick on several GPUs, made explicit to add the flag below
    if strategy == "ddp" and find_unused_parameters:
        # Parameters frozen mid-run (--freeze-epochs) get no gradient while frozen: DDP must not wait for them.
        strategy = "ddp_find_unused_parameters_true"
    if cfg.precision != "32-true" and not torch.cuda.is_available() and cfg.precision.startswith("16"):
        raise UserError(f"--precision {cfg.precision} needs a GPU; use 32-true or bf16-mixed on a CPU")
    # A --max-steps run shorter than an epoch still ends with a validation pass.
    short = steps_per_epoch is not None and 0 < cfg.max_steps < steps_per_epoch
    return pl.Trainer(
        val_check_interval=cfg.max_steps if short else None,
        check_val_every_n_epoch=1 if short else val_every_n_epochs,
        default_root_dir=str(out),
        accelerator=cfg.accelerator,
        devices=devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=cfg.precision,
        max_epochs=cfg.epochs,
        min_epochs=min_epochs,
        max_steps=cfg.max_steps,
        logger=TensorBoardLogger(save_dir=str(out), name="tensorboard", version="", default_hp_metric=False),
        # last.ckpt is written after the command's own callbacks (e.g. ssl.ckpt), so a run that
        # can be resumed always has its portable checkpoint of the same epoch beside it.
        callbacks=[
            FiniteLossGuard(cfg.log_every_n_steps, checkpoint_every_n_steps),
            LearningRateMonitor(logging_interval="step"),
            Throughput(),
            *(callbacks or []),
            LastCheckpoint(out / "checkpoints" / "last.ckpt", checkpoint_every_n_steps),
        ],
        plugins=[AtomicCheckpointIO()],
        # Only our checkpoints (last.ckpt, and fine-tuning's best.ckpt): with LastCheckpoint always
        # present, Lightning adds no default one of its own.
        enable_checkpointing=True,
        log_every_n_steps=cfg.log_every_n_steps,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if enable_val else 0,
        deterministic=False,
        use_distributed_sampler=True,
    )


def cosine_schedule(optimizer, cfg, steps_per_epoch: int) -> dict:
    """lightly's warm-up + cosine schedule, stepped per batch."""
    from lightly.utils.scheduler import CosineWarmupScheduler

    total = cfg.max_steps if cfg.max_steps > 0 else max(1, cfg.epochs * steps_per_epoch)
    warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total // 2)
    sched = CosineWarmupScheduler(optimizer, warmup_epochs=warmup, max_epochs=total, end_value=0.01)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def default_device() -> torch.device:
    """The device of inference outside Lightning (evaluate, predict, explain, embed): the
    first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def step_generator(*keys: int) -> torch.Generator:
    """A ``torch.Generator`` derived from integer ``keys`` such as (seed, rank, step): DDP
    ranks draw differently, and a run resumed from ``last.ckpt`` draws at step k exactly
    what the uninterrupted run drew there, without any state to save."""
    import numpy as np

    state = np.random.SeedSequence(list(keys)).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def stop_on_any_rank(module: pl.LightningModule, bad: bool) -> bool:
    """True on every rank when ``bad`` is true on any: a rank that stopped alone would
    leave the others waiting in the gradient all-reduce."""
    trainer = getattr(module, "_trainer", None)
    if trainer is not None and getattr(trainer, "world_size", 1) > 1:
        return bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
    return bad


def pin_memory(trainer: pl.Trainer) -> bool:
    """Pinned host memory only pays off when batches go to a GPU."""
    return trainer.strategy.root_device.type == "cuda"


DEVICE_SHARE = 0.25  # data_on_device=auto: the decoded images may take this share of a GPU's free memory


def place_data(bank, trainer: pl.Trainer, setting: str) -> bool:
    """Hold ``bank`` (an ``ImageBank``) on the training device when ``setting`` (the
    ``data_on_device`` setting) says so: ``on``, or ``auto`` on a GPU whose free memory it fits a
    quarter of. Says what it did; returns whether the bank is held there (then the loader's
    batches are already on the device and pinning them is pointless)."""
    device = trainer.strategy.root_device
    size = bank.nbytes()
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return False
    if setting == "auto":
        free = torch.cuda.mem_get_info(device)[0]
        if size > DEVICE_SHARE * free:
            print(
                f"the decoded images ({size / 2**30:.2f} GiB) stay in host memory: more than {DEVICE_SHARE:.0%} "
                f"of {device}'s free {free / 2**30:.1f} GiB (--data-on-device on to force)"
            )
            return False
    bank.to_device(device)
    print(f"the decoded images are held on {device} ({size / 2**30:.2f} GiB): batches are indexed there")
    return True


def loader_pinning(bank, trainer: pl.Trainer, setting: str) -> bool:
    """What every training command does before building its loaders: ``place_data``, then
    whether the loaders should pin their batches (going from host memory to a GPU)."""
    held = place_data(bank, trainer, setting)
    return pin_memory(trainer) and not held
