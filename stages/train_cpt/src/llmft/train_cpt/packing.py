"""Turning documents into training sequences for causal language modelling: packed into fixed-length blocks with an
end-of-sequence token between documents (no padding, loss on every token), or one document per padded sequence."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

IGNORE_INDEX = -100


def pack_blocks(documents: Iterable[Sequence[int]], block_length: int, eos_token_id: int) -> list[list[int]]:
    """Concatenates documents, each followed by EOS, and cuts the stream into blocks of `block_length` tokens.
    The incomplete last block is dropped."""
    blocks: list[list[int]] = []
    buffer: list[int] = []
    for ids in documents:
        buffer.extend(ids)
        buffer.append(eos_token_id)
        while len(buffer) >= block_length:
            blocks.append(buffer[:block_length])
            buffer = buffer[block_length:]
    return blocks


def pad_documents(
    documents: Iterable[Sequence[int]], max_length: int, eos_token_id: int, pad_token_id: int
) -> list[dict[str, list[int]]]:
    """One document (truncated, EOS-terminated) per sequence, right-padded to `max_length`; padding carries no loss."""
    rows = []
    for ids in documents:
        ids = list(ids[: max_length - 1]) + [eos_token_id]
        padding = max_length - len(ids)
        rows.append(
            {
                "input_ids": ids + [pad_token_id] * padding,
                "attention_mask": [1] * len(ids) + [0] * padding,
                "labels": ids + [IGNORE_INDEX] * padding,
            }
        )
    return rows
