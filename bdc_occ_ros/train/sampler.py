"""A DistributedSampler that can start part-way through an epoch (resume after a mid-epoch stop)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Same shuffling as ``DistributedSampler`` (seeded by ``seed + epoch``, identical on every rank, then
    sharded by rank, tail dropped so ranks see equal counts), minus the first ``skip`` indices of this rank."""

    def __init__(self, dataset: Sized, rank: int, world_size: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.skip = 0

    def set_position(self, epoch: int, skip: int = 0) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return super().__len__() - self.skip
