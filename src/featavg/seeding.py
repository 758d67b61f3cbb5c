"""Deterministic seeds for every random draw.

A run seed fans out into independent streams (centers, train noise, test noise, init, ...)
so that, e.g., replicate ``i`` of an ensemble draws exactly what a single run with seed ``i``
draws, whatever the ensemble size. Streams are keyed by name, never by call order.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for the named ``stream`` of run ``seed`` (stable across platforms)."""
    digest = hashlib.sha256(f"{int(seed)}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for the named stream (CPU draws make runs device-independent)."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, stream))
