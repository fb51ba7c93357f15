"""``ssl-derm pretrain``: assemble the pool, train a pretext task, write ``ssl.ckpt``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from pytorch_lightning.callbacks import Callback

from ssl_derm.checkpoint import init_name, init_seen, save_checkpoint
from ssl_derm.config import PretrainConfig, to_dict
from ssl_derm.data import BankDataset, ImageBank, decode_source, make_loader, open_unlabeled, write_splits
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import labeled_from_config
from ssl_derm.data.leaks import check_split_by_content, check_unseen_ids, drop_copies, heldout_ids, write_duplicates
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.engine import loader_pinning, make_trainer, open_run, resume_path
from ssl_derm.errors import UserError
from ssl_derm.pretext import build_task
from ssl_derm.pretext.knn import knn_data
from ssl_derm.pretext.module import PretextModule


def write_skipped(out: Path, skipped: list[tuple[str, str]], total: int) -> None:
    if not skipped:
        return
    (out / "skipped.txt").write_text("".join(f"{name}\t{why}\n" for name, why in skipped))
    first = "; ".join(f"{Path(n).name} ({w})" for n, w in skipped[:3])
    print(
        f"skipped {len(skipped):,} of {total:,} files: {first}{' ...' if len(skipped) > 3 else ''} "
        f"(full list: {out / 'skipped.txt'})"
    )


def build_pool(cfg: PretrainConfig, out: Path):
    """The pool (train split of --data plus every --unlabeled archive, less the archive
    files that copy a validation or test image), the kNN data and the pool's fingerprints.

    Copies are found by content (identical files, re-encoded or resized ones), listed in
    ``OUT/duplicates.txt`` and summarised on stderr."""
    parts, pool, ids, knn, held = [], [], [], None, None
    skipped: list[tuple[str, str]] = []
    duplicates: list[tuple[str, str, float]] = []
    dropped: dict[str, tuple[int, int]] = {}
    total = 0
    if cfg.data is not None or not cfg.unlabeled:
        lab = labeled_from_config(cfg)
        check_split_by_content(lab)
        write_splits(lab.table, out)
        parts.append(lab.bank.parts[0])
        pool.append(lab.indices("train"))
        ids.append(lab.bank.ids(lab.indices("train")))
        held = heldout_ids(lab)
        total += len(lab.bank)
        knn = knn_data(lab, cfg.knn_max_bank, cfg.seed)
    for spec in cfg.unlabeled:
        source = open_unlabeled(spec)
        decoded = decode_source(source, cfg.image_size, cfg.cache_dir, cfg.progress, resize=cfg.resize)
        offset = sum(int(p.ok.sum()) for p in parts)
        parts.append(decoded)
        archive = decoded.ids()
        keep = np.ones(len(archive), bool)
        if held is not None:
            keep, copies = drop_copies(archive, held)
            duplicates += [(archive.names[i], held.names[j], sim) for i, j, sim in copies]
            dropped[source.label] = (len(copies), len(source))
        pool.append(offset + np.flatnonzero(keep))
        ids.append(archive.subset(np.flatnonzero(keep)))
        skipped += decoded.skipped
        total += len(source)
    if skipped and cfg.strict:
        first = ", ".join(Path(n).name for n, _ in skipped[:3])
        raise UserError(f"--strict: {len(skipped)} unreadable file(s) in the unlabelled pool (first: {first})")
    write_skipped(out, skipped, total)
    write_duplicates(out, duplicates, dropped)
    bank = ImageBank(parts)
    pool_idx = np.concatenate(pool)
    if len(pool_idx) < 2:
        raise UserError("the pretraining pool holds fewer than 2 readable images")
    if cfg.data is None and cfg.unlabeled:  # said once the pool is valid, so an error stays one line
        print(
            "ssl-derm: note: no --data: the pool is the --unlabeled archives alone (no kNN monitor); "
            "add --data SOURCE to pool them with its training split",
            file=sys.stderr,
        )
    return bank, pool_idx, knn, ContentIds.concat(ids), held


class PortableCheckpoint(Callback):
    """Writes ``ssl.ckpt`` after every epoch (atomically), so a crash keeps the last good one."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path, self.meta = path, meta

    def write(self, trainer, module, epochs_completed: int) -> None:
        if trainer.is_global_zero:
            save_checkpoint(
                self.path,
                encoder_state_dict=module.task.encoder.state_dict(),
                global_step=trainer.global_step,
                epochs_completed=epochs_completed,
                **module.task.extra_state(),
                **self.meta,
            )

    def on_train_epoch_end(self, trainer, module) -> None:
        self.write(trainer, module, trainer.current_epoch + 1)

    def on_train_end(self, trainer, module) -> None:
        self.write(trainer, module, trainer.fit_loop.epoch_progress.current.completed)


def run_pretrain(cfg: PretrainConfig, overwrite: bool = False, resume: bool = False) -> Path:
    cfg, out = open_run(cfg, "pretrain", overwrite, resume)
    inherited = init_seen(cfg.init)
    bank, pool_idx, knn, pool_ids, held = build_pool(cfg, out)
    if held is not None:
        check_unseen_ids(inherited, held, f"the --init checkpoint {cfg.init}", "continue from another checkpoint")
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(pool_idx)
    n_hold = int(round(len(perm) * cfg.holdout_fraction)) if len(perm) >= 20 else 0
    hold, train = np.sort(perm[:n_hold]), perm[n_hold:]
    batch = min(cfg.batch_size, len(train))
    encoder = build_encoder(cfg.encoder, cfg.init)
    task = build_task(cfg.task, encoder, cfg)
    spec = encoder_spec(cfg.encoder)
    steps = max(1, len(train) // batch)
    module = PretextModule(task, cfg, spec.normalization, steps, knn)
    chain = cfg.task if cfg.init == "random" else f"{init_name(cfg.init)}+{cfg.task}"
    meta = {
        "encoder_name": cfg.encoder,
        "image_size": cfg.image_size,
        "normalization": spec.normalization,
        "task": cfg.task,
        "init_chain": chain,
        "config": to_dict(cfg),
        "seen_images": ContentIds.concat([inherited, pool_ids]).to_state(),
    }
    trainer = make_trainer(
        cfg, out, callbacks=[PortableCheckpoint(out / "ssl.ckpt", meta)], enable_val=n_hold > 0, steps_per_epoch=steps
    )
    module = module.to(memory_format=torch.channels_last)
    pin = loader_pinning(bank, trainer, cfg.data_on_device)
    train_loader = make_loader(
        BankDataset(bank, train), batch, shuffle=True, seed=cfg.seed, drop_last=True, pin_memory=pin
    )
    val_loader = (
        make_loader(BankDataset(bank, hold), batch, shuffle=False, seed=cfg.seed, pin_memory=pin) if n_hold else None
    )
    print(
        f"pretraining {cfg.task} on {len(train):,} images ({len(hold):,} held out), "
        f"{cfg.encoder} @ {cfg.image_size}px, init={cfg.init} -> {out}"
    )
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_path(out, resume), weights_only=True)
    if trainer.is_global_zero:
        print(f"wrote {out / 'ssl.ckpt'} (TensorBoard: tensorboard --logdir {out})")
    return out
