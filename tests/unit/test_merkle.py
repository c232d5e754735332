"""The month seal's Merkle tree, pure: it is RFC 6962's tree, every leaf's proof verifies,
and a changed leaf, sibling, side or root does not (``tally.domain.merkle``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain.merkle import (
    RootBuilder,
    Sibling,
    leaf_hash,
    node_hash,
    prove,
    root,
    verify_proof,
)

# distinct, as entry hashes are (two equal subtrees would make a swapped side go unseen)
LEAVES = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70, unique=True)


def rfc6962(leaves: list[bytes]) -> bytes:
    """RFC 6962, section 2.1, as written: MTH(D[n]) splits at the largest power of 2 < n."""
    if not leaves:
        return hashlib.sha256().digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962(leaves[:k]) + rfc6962(leaves[k:])).digest()


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_the_root_is_rfc_6962s(leaves: list[bytes]) -> None:
    assert root(leaves) == rfc6962(leaves)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=140))
def test_a_root_built_leaf_by_leaf_is_the_same(leaves: list[bytes]) -> None:
    """The seal reads its leaves through a cursor: the streamed root is the tree's root."""
    built = RootBuilder()
    built.extend(leaves)
    assert (built.root(), built.count) == (rfc6962(leaves), len(leaves))


def test_a_streamed_root_keeps_one_node_per_level() -> None:
    built = RootBuilder()
    built.extend(hashlib.sha256(str(n).encode()).digest() for n in range(5000))
    assert len(built._stack) == bin(5000).count("1")  # 5000 = 4096 + 512 + 256 + 128 + 8


def test_leaves_and_nodes_are_hashed_apart() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert root([a]) == leaf_hash(a) != hashlib.sha256(a).digest()
    assert root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    # a node's two children, given as one 64-byte leaf, do not give the node
    assert root([leaf_hash(a) + leaf_hash(b)]) != root([a, b])
    # an odd last leaf is carried up, not paired with itself
    assert root([a, b, a]) != root([a, b, a, a])


@given(LEAVES, st.data())
def test_every_leafs_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = prove(leaves, index)
    assert (proof.leaf, proof.index, proof.size, proof.root) == (
        leaves[index],
        index,
        len(leaves),
        root(leaves),
    )
    assert len(proof.siblings) <= max(len(leaves) - 1, 0).bit_length()
    assert verify_proof(proof)


@given(LEAVES, st.data())
def test_a_changed_leaf_sibling_side_or_root_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    proof = prove(leaves, data.draw(st.integers(0, len(leaves) - 1)))
    flip = bytes([proof.leaf[0] ^ 1]) + proof.leaf[1:]
    assert not verify_proof(replace(proof, leaf=flip))
    assert not verify_proof(replace(proof, root=hashlib.sha256(proof.root).digest()))
    if proof.siblings:
        step = data.draw(st.integers(0, len(proof.siblings) - 1))
        sibling = proof.siblings[step]
        changed = Sibling(sibling.side, hashlib.sha256(sibling.hash).digest())
        swapped = Sibling("left" if sibling.side == "right" else "right", sibling.hash)
        for wrong in (changed, swapped):
            siblings = (*proof.siblings[:step], wrong, *proof.siblings[step + 1 :])
            assert not verify_proof(replace(proof, siblings=siblings))


def test_a_proof_of_a_leaf_outside_the_tree_is_refused() -> None:
    with pytest.raises(IndexError, match="leaf 2 of a tree of 2 leaves"):
        prove([b"a" * 32, b"b" * 32], 2)
