"""Cleaning rows as they stream past, and the deterministic train/eval split.

`Cleaner.keep(row)` applies, in this order: drop blank rows; fail on rows over `max_chars`; drop rows under
`min_chars`; drop rows matching `drop_patterns`; keep only `languages` (langid); drop exact duplicates (by content
hash); drop near duplicates (MinHash LSH over word shingles, datasketch). It counts the rows each step removed.
The split assigns a row to eval by a hash of the seed and its content id, so adding rows never moves existing rows."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from llmft.data.sources import SourceError
from llmft.proto.data.v1 import dataset_pb2

NUM_PERM = 64
SHINGLE_WORDS = 5


def row_text(row: dict[str, Any], columns: tuple[str, ...]) -> str:
    if len(columns) == 1:
        return str(row[columns[0]])
    return "\n".join(str(row[c]) for c in columns)


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[bytes]:
    words = text.split()
    if len(words) <= size:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


class Signatures:
    """MinHash signatures of texts' word shingles, value for value those of datasketch's
    `MinHash(num_perm=NUM_PERM, seed=1)` in its default scheme ("affine32": the first 4 bytes of each shingle's SHA-1,
    the MurmurHash3 finalizer, then `a * h + b` modulo 2**32 per permutation), which the one-process build's LSH index
    holds. A shard worker computes them here because `import datasketch` imports scipy (~38 MiB resident and ~0.3 s in
    every worker, for an integral the worker does not need), and because the permutations are drawn once here, not
    once per row. tests/test_data_cleaning.py checks the values against datasketch's."""

    FMIX = (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16)

    def __init__(self, num_perm: int = NUM_PERM, seed: int = 1) -> None:
        import numpy as np

        gen = np.random.RandomState(seed)
        self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)

    def of(self, text: str) -> Any:
        """The signature of `text`: `num_perm` uint32 values."""
        import numpy as np

        digests = b"".join(hashlib.sha1(shingle).digest()[:4] for shingle in shingles(text))
        hv = np.frombuffer(digests, dtype="<u4").astype(np.uint32).reshape(-1, 1)
        s1, m1, s2, m2, s3 = (np.uint32(c) for c in self.FMIX)
        hv = hv ^ (hv >> s1)
        hv = hv * m1
        hv = hv ^ (hv >> s2)
        hv = hv * m2
        hv = hv ^ (hv >> s3)
        return (hv * self.a + self.b).min(axis=0)


def lsh_params(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """(bands, rows per band) minimising the sum of the false positive and false negative probabilities at
    `threshold`, as datasketch's `MinHashLSH` picks them (equal weights), without scipy: each probability is the
    integral of a polynomial of degree at most `num_perm`, which Gauss-Legendre quadrature of that many points
    computes exactly."""
    import numpy as np

    nodes, weights = np.polynomial.legendre.leggauss(num_perm)

    def integral(function: Callable[[Any], Any], low: float, high: float) -> float:
        s = (high - low) / 2 * nodes + (high + low) / 2
        return float((high - low) / 2 * (weights * function(s)).sum())

    best, choice = float("inf"), (0, 0)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            low = integral(lambda s: 1 - (1 - s**rows) ** bands, 0.0, threshold)  # noqa: B023 (called at once)
            high = integral(lambda s: (1 - s**rows) ** bands, threshold, 1.0)  # noqa: B023
            if low * 0.5 + high * 0.5 < best:  # false positives below the threshold, false negatives above it
                best, choice = low * 0.5 + high * 0.5, (bands, rows)
    return choice


class NearDuplicates:
    """MinHash LSH index: `seen(text)` is True when an earlier text's estimated Jaccard similarity (word shingles) is
    at least the threshold; otherwise it indexes the text."""

    def __init__(self, threshold: float) -> None:
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self.count = 0

    def seen(self, text: str) -> bool:
        from datasketch import MinHash

        minhash = MinHash(num_perm=NUM_PERM, seed=1)
        minhash.update_batch(list(shingles(text)))
        if self.lsh.query(minhash):
            return True
        self.lsh.insert(str(self.count), minhash)
        self.count += 1
        return False


def detect_language(text: str) -> str:
    import langid

    return str(langid.classify(text[:2000])[0])


class Cleaner:
    """Decides row by row what stays; `removed` reports each enabled step's count in order."""

    def __init__(self, columns: tuple[str, ...], config: dataset_pb2.CleaningConfig) -> None:
        self.columns = columns
        self.config = config
        self.steps: list[tuple[str, Callable[[dict[str, Any], str], bool]]] = [
            ("drop_blank", lambda row, text: bool(text.strip()))
        ]
        if config.min_chars:
            self.steps.append(("min_chars", lambda row, text: len(text.strip()) >= config.min_chars))
        if config.drop_patterns:  # each one compiles: build.config_problems checked the request first
            patterns = [re.compile(p) for p in config.drop_patterns]
            self.steps.append(("drop_patterns", lambda row, text: not any(p.search(text) for p in patterns)))
        if config.languages:
            wanted = set(config.languages)
            self.steps.append(("languages", lambda row, text: detect_language(text) in wanted))
        if config.deduplicate_exact:
            self._seen: set[bytes] = set()
            self.steps.append(("deduplicate_exact", self._first_of_its_content))
        if config.near_duplicate_threshold:  # in (0, 1]: build.config_problems checked the request first
            near = NearDuplicates(config.near_duplicate_threshold)
            self.steps.append(("deduplicate_near", lambda row, text: not near.seen(text)))
        self.counts = {name: 0 for name, _ in self.steps}
        self.first: dict[str, str] = {}

    def _first_of_its_content(self, row: dict[str, Any], text: str) -> bool:
        key = bytes.fromhex(row["id"].split("~", 1)[0][:32])
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def keep(self, row: dict[str, Any]) -> bool:
        text = row_text(row, self.columns)
        if self.config.max_chars and len(text) > self.config.max_chars:
            raise SourceError(
                f"{row['source']}: row is {len(text):,} characters, over cleaning.max_chars={self.config.max_chars}"
            )
        for name, keep in self.steps:
            if not keep(row, text):
                self.counts[name] += 1
                self.first.setdefault(name, row["source"])
                return False
        return True

    @property
    def removed(self) -> list[tuple[str, int, str]]:
        """(step, rows removed, where the first removed row came from) of each enabled step, in order."""
        return [(name, self.counts[name], self.first.get(name, "")) for name, _ in self.steps]


def split_of(row_id: str, config: dataset_pb2.SplitConfig) -> str:
    """ "eval" for a stable `eval_fraction` of ids (by hash of seed and id), else "train"."""
    digest = hashlib.sha256(f"{config.seed}:{row_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "eval" if position < config.eval_fraction else "train"
