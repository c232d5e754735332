"""The shard rule of DESIGN.md section 7: the README shows the same vectors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tally.domain.shards import parse_shards, shard_key, shard_keys, shard_of, split_shards

# subject -> shard with 2, 4 and 8 shards (the README's table)
VECTORS = {
    "acme": (0, 0, 0),
    "globex": (1, 3, 7),
    "initech": (1, 3, 3),
    "hooli": (1, 3, 3),
    "café": (1, 1, 1),  # UTF-8 bytes of the subject as given (no normalization)
}


@pytest.mark.parametrize("subject", VECTORS)
def test_the_shard_of_a_subject_is_its_sha256_prefix_modulo_n(subject: str) -> None:
    assert tuple(shard_of(subject, n) for n in (2, 4, 8)) == VECTORS[subject]


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_function_and_table_route_as_tally_does() -> None:
    """The README's five lines, run as a producer in another codebase would copy them, give
    its own table, and Tally's rule gives the same."""
    section = README.read_text().split("\n## Scaling out\n", 1)[1].split("\n## ", 1)[0]
    namespace: dict[str, object] = {}
    exec(section.split("```python\n", 1)[1].split("```", 1)[0], namespace)
    documented = namespace["shard_of"]
    assert callable(documented)
    rows = re.findall(r"^\| `([^`]+)`[^|]*\| (\d) \| (\d) \| (\d) \|$", section, re.M)
    assert len(rows) >= 4
    for subject, *shards in rows:
        expected = tuple(map(int, shards))
        assert tuple(documented(subject, n) for n in (2, 4, 8)) == expected
        assert tuple(shard_of(subject, n) for n in (2, 4, 8)) == expected


def test_one_shard_is_the_single_key_and_more_are_hash_tagged() -> None:
    assert shard_of("anything", 1) == 0
    assert shard_keys("tally:usage", 1) == ["tally:usage"]
    assert shard_keys("tally:usage", 3) == ["tally:usage:{0}", "tally:usage:{1}", "tally:usage:{2}"]
    with pytest.raises(ValueError, match="shards are 0 to 3"):
        shard_key("tally:usage", 4, 4)


def test_a_subset_of_shards_is_named_by_number() -> None:
    assert parse_shards("2,0", 4) == [0, 2]
    with pytest.raises(ValueError, match="the shards are 0 to 3"):
        parse_shards("1,4", 4)
    with pytest.raises(ValueError, match="like '0,2'"):
        parse_shards("one", 4)


def test_consumer_processes_split_the_shards_round_robin() -> None:
    assert split_shards(4, 2) == [[0, 2], [1, 3]]
    assert split_shards(4, 1) == [[0, 1, 2, 3]]
    assert split_shards(1, 2) == [[0], [0]]  # more processes than shards: they share one
