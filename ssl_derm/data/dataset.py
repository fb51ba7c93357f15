"""Batches straight out of the decoded uint8 cache.

``ImageBank`` joins decoded sources into one index; ``BankDataset`` serves a
whole batch per fetch (``__getitems__``) with one fancy-index per source, so
the loader costs a memory copy, not a JPEG decode, per image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssl_derm.data.cache import Decoded
from ssl_derm.data.identity import ContentIds


class ImageBank:
    """The valid images of several decoded sources behind one index."""

    def __init__(self, parts: list[Decoded]) -> None:
        self.parts = parts
        self.part = np.concatenate([np.full(int(p.ok.sum()), i) for i, p in enumerate(parts)]).astype(np.int64)
        self.local = np.concatenate([np.flatnonzero(p.ok) for p in parts]).astype(np.int64)
        self.names = [p.names[j] for i, p in enumerate(parts) for j in np.flatnonzero(p.ok)]
        self._ids: ContentIds | None = None

    def __len__(self) -> int:
        return len(self.local)

    @property
    def image_size(self) -> int:
        return int(self.parts[0].pixels.shape[-1])

    def ids(self, idx: np.ndarray | None = None) -> ContentIds:
        """Content fingerprints of bank rows ``idx`` (all rows when None), in that order."""
        if self._ids is None:  # built once: the leak checks ask for several subsets
            self._ids = ContentIds.concat_parts([p.ids() for p in self.parts])
        return self._ids if idx is None else self._ids.subset(idx)

    def _gather(self, idx: np.ndarray, field: str, channels: int) -> torch.Tensor:
        """uint8 ``[len(idx), channels, S, S]`` from each part's array ``field``, order kept."""
        idx = np.asarray(idx, dtype=np.int64)
        s = self.image_size
        out = np.empty((len(idx), channels, s, s), np.uint8)
        for p in np.unique(self.part[idx]):
            sel = np.flatnonzero(self.part[idx] == p)
            local = self.local[idx[sel]]
            order = np.argsort(local)  # sorted reads are kinder to a memmap
            out[sel[order]] = getattr(self.parts[p], field)[local[order]]
        return torch.from_numpy(out)

    def gather(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 ``[len(idx), 3, S, S]`` for bank indices ``idx`` (order kept)."""
        return self._gather(idx, "pixels", 3)

    @property
    def has_masks(self) -> bool:
        return all(p.masks is not None for p in self.parts)

    def gather_masks(self, idx: np.ndarray) -> torch.Tensor:
        """uint8 ``{0, 1}`` ``[len(idx), 1, S, S]`` lesion masks of bank indices ``idx``, aligned
        with ``gather(idx)`` (a row whose mask could not be read is all zero: drop it first)."""
        if not self.has_masks:
            raise ValueError("this bank holds no lesion masks (prepare_labeled(..., masks=True))")
        return self._gather(idx, "masks", 1)


class BankDataset(Dataset):
    """Map-style view of ``bank`` rows ``indices`` with optional integer labels, or with
    ``masks=True`` their lesion masks: items are ``(images, masks)`` then."""

    def __init__(
        self, bank: ImageBank, indices: np.ndarray, labels: np.ndarray | None = None, masks: bool = False
    ) -> None:
        self.bank = bank
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = None if labels is None else torch.tensor(np.asarray(labels), dtype=torch.long)
        if masks and labels is not None:
            raise ValueError("BankDataset: labels or masks, not both")
        self.masks = masks

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, items: list[int]):
        idx = self.indices[np.asarray(items)]
        images = self.bank.gather(idx)
        if self.masks:
            return images, self.bank.gather_masks(idx)
        if self.labels is None:
            return images
        return images, self.labels[torch.as_tensor(items)]


def _passthrough(batch):
    return batch


def make_loader(
    dataset: BankDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_last: bool = False,
    sampler=None,
    pin_memory: bool = False,
) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        generator=gen,
        collate_fn=_passthrough,
        num_workers=0,
        pin_memory=pin_memory,
    )
