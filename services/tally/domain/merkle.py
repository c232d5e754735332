"""The month seal's Merkle tree: a SHA-256 root over a period's entries, and inclusion
proofs an auditor checks with ``hashlib`` alone. Pure.

The tree is RFC 6962's (Certificate Transparency, section 2.1), so outsiders can rebuild
it from the standard:

- a leaf is one entry's stored hash (``journal_entry.hash``, 32 bytes), hashed as
  ``SHA-256(0x00 || leaf)``; an inner node is ``SHA-256(0x01 || left || right)``: the
  prefixes keep a leaf from ever passing for a node (domain separation);
- leaves are paired left to right, level by level; the last node of a level with an odd
  count is carried up unchanged (never paired with itself, so no two leaf lists share a
  root); this is exactly RFC 6962's split at the largest power of two below the count;
- the root of no leaves is ``SHA-256()`` (the empty string).

The order of the leaves (by lane, then seq) is the seal's, not the tree's: see
``tally.adapters.postgres.seals``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
Side = Literal["left", "right"]


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@dataclass(frozen=True)
class Sibling:
    """One step up from a leaf: the sibling's hash and the side it sits on."""

    side: Side
    hash: bytes


@dataclass(frozen=True)
class Proof:
    """That ``leaf`` is the ``index``-th of ``size`` leaves under ``root``."""

    leaf: bytes
    index: int
    size: int
    siblings: tuple[Sibling, ...]
    root: bytes


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, the hashed leaves first and the root's level last."""
    level = [leaf_hash(leaf) for leaf in leaves]
    levels = [level]
    while len(level) > 1:
        level = [
            node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        levels.append(level)
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256().digest()
    return _levels(leaves)[-1][0]


class RootBuilder:
    """The root of leaves fed one by one, in memory logarithmic in their count: the same
    root as :func:`root` (a stack of perfect subtrees, as in a binary counter; at the end
    they fold from the right, which is what carrying odd last nodes up amounts to)."""

    def __init__(self) -> None:
        self.count = 0
        self._stack: list[tuple[int, bytes]] = []  # (height, node), heights decreasing

    def add(self, leaf: bytes) -> None:
        height, node = 0, leaf_hash(leaf)
        stack = self._stack
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        self.count += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.add(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return hashlib.sha256().digest()
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


class Tree:
    """Every level of a tree over ``leaves``, kept: the proofs of many of its leaves, each
    in time logarithmic in their count (memory: about twice the leaves' hashes)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._levels = _levels(leaves)

    @property
    def root(self) -> bytes:
        return self._levels[-1][0] if self.leaves else hashlib.sha256().digest()

    def prove(self, index: int) -> Proof:
        """The inclusion proof of ``leaves[index]``: its siblings from the bottom up (an odd
        last node, carried up unchanged, has no sibling at that level and adds no step)."""
        if not 0 <= index < len(self.leaves):
            raise IndexError(f"leaf {index} of a tree of {len(self.leaves)} leaves")
        siblings, position = [], index
        for level in self._levels[:-1]:
            partner = position ^ 1
            if partner < len(level):
                side: Side = "left" if partner < position else "right"
                siblings.append(Sibling(side, level[partner]))
            position //= 2
        return Proof(self.leaves[index], index, len(self.leaves), tuple(siblings), self.root)


def prove(leaves: Sequence[bytes], index: int) -> Proof:
    """The inclusion proof of ``leaves[index]`` (one proof; :class:`Tree` for many)."""
    return Tree(leaves).prove(index)


def sides(index: int, size: int) -> list[Side]:
    """The sides of the siblings a proof of ``leaves[index]`` in a tree of ``size`` leaves
    has, from the leaf up: what binds a proof to its place (the same siblings on other
    sides would prove another leaf, or the same one twice)."""
    found: list[Side] = []
    position, width = index, size
    while width > 1:
        partner = position ^ 1
        if partner < width:
            found.append("left" if partner < position else "right")
        position, width = position // 2, (width + 1) // 2
    return found


def verify_proof(proof: Proof) -> bool:
    """The leaf, folded with its siblings, gives the root."""
    node = leaf_hash(proof.leaf)
    for sibling in proof.siblings:
        left, right = (sibling.hash, node) if sibling.side == "left" else (node, sibling.hash)
        node = node_hash(left, right)
    return node == proof.root
