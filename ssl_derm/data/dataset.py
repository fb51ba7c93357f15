"""Batches straight out of the decoded uint8 cache.

``ImageBank`` joins decoded sources into one index; ``BankDataset`` serves a
whole batch per fetch (``__getitems__``) with one fancy-index per source, so
the loader costs a memory copy, not a JPEG decode, per image. A bank held on the
training device (``ImageBank.to_device``, the ``data_on_device`` setting) is indexed there:
no host-to-device copy per batch.
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
        self.resident: dict[str, torch.Tensor] = {}  # field -> every row, on a device (``to_device``)

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

    def fields(self) -> list[tuple[str, int]]:
        """(array, channels) of what a row holds: its pixels, and its mask where there are masks."""
        return [("pixels", 3), *((("masks", 1),) if self.has_masks else ())]

    def nbytes(self) -> int:
        """Bytes of every row's uint8 arrays (what ``to_device`` puts on the device)."""
        return len(self) * self.image_size**2 * sum(c for _, c in self.fields())

    def to_device(self, device: torch.device, chunk: int = 1024) -> ImageBank:
        """Hold every row (pixels, and masks where there are) in one uint8 tensor on ``device``,
        filled ``chunk`` rows at a time (a memory-mapped source is never read whole into host
        memory); ``gather`` then indexes there. The same rows, the same bytes."""
        s = self.image_size
        for field, channels in self.fields():
            if field in self.resident:
                continue
            t = torch.empty((len(self), channels, s, s), dtype=torch.uint8, device=device)
            for i in range(0, len(self), chunk):
                rows = np.arange(i, min(i + chunk, len(self)))
                t[i : i + len(rows)] = self._gather(rows, field, channels).to(device)
            self.resident[field] = t
        return self

    def _gather(self, idx: np.ndarray, field: str, channels: int, held: bool = False) -> torch.Tensor:
        """uint8 ``[len(idx), channels, S, S]`` from each part's array ``field``, order kept;
        with ``held``, indexed on the device where the bank is held there (``to_device``)."""
        idx = np.asarray(idx, dtype=np.int64)
        if held and field in self.resident:
            store = self.resident[field]
            rows = torch.from_numpy(idx)
            if store.is_cuda:  # from pinned memory the copy is queued, not waited for
                rows = rows.pin_memory().to(store.device, non_blocking=True)
            return store[rows]
        s = self.image_size
        out = np.empty((len(idx), channels, s, s), np.uint8)
        for p in np.unique(self.part[idx]):
            sel = np.flatnonzero(self.part[idx] == p)
            local = self.local[idx[sel]]
            order = np.argsort(local)  # sorted reads are kinder to a memmap
            out[sel[order]] = getattr(self.parts[p], field)[local[order]]
        return torch.from_numpy(out)

    def gather(self, idx: np.ndarray, held: bool = False) -> torch.Tensor:
        """uint8 ``[len(idx), 3, S, S]`` for bank indices ``idx`` (order kept), in host memory;
        ``held``: on the device where the bank is held (``to_device``), as the loaders take them."""
        return self._gather(idx, "pixels", 3, held)

    @property
    def has_masks(self) -> bool:
        return all(p.masks is not None for p in self.parts)

    def gather_masks(self, idx: np.ndarray, held: bool = False) -> torch.Tensor:
        """uint8 ``{0, 1}`` ``[len(idx), 1, S, S]`` lesion masks of bank indices ``idx``, aligned
        with ``gather(idx)`` (a row whose mask could not be read is all zero: drop it first)."""
        if not self.has_masks:
            raise ValueError("this bank holds no lesion masks (prepare_labeled(..., masks=True))")
        return self._gather(idx, "masks", 1, held)


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
        self._device_labels: torch.Tensor | None = None  # the labels beside a bank held on a GPU

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, items: list[int]):
        idx = self.indices[np.asarray(items)]
        images = self.bank.gather(idx, held=True)
        if self.masks:
            return images, self.bank.gather_masks(idx, held=True)
        if self.labels is None:
            return images
        if images.is_cuda:  # the bank is held on the GPU: so are the labels, indexed there
            if self._device_labels is None:
                self._device_labels = self.labels.to(images.device)
            pos = torch.as_tensor(items).pin_memory().to(images.device, non_blocking=True)
            return images, self._device_labels[pos]
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
