from llmft.train_cpt.packing import IGNORE_INDEX, pack_blocks, pad_documents


def test_documents_are_joined_with_eos_and_cut_into_full_blocks() -> None:
    blocks = pack_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_length=4, eos_token_id=0)
    assert blocks == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]


def test_the_incomplete_tail_is_dropped() -> None:
    assert pack_blocks([[1, 2, 3, 4, 5]], block_length=4, eos_token_id=0) == [[1, 2, 3, 4]]
    assert pack_blocks([[1]], block_length=4, eos_token_id=0) == []


def test_padding_truncates_terminates_and_masks() -> None:
    rows = pad_documents([[1, 2, 3, 4, 5, 6], [7]], max_length=4, eos_token_id=0, pad_token_id=9)
    assert rows[0] == {"input_ids": [1, 2, 3, 0], "attention_mask": [1, 1, 1, 1], "labels": [1, 2, 3, 0]}
    assert rows[1] == {
        "input_ids": [7, 0, 9, 9],
        "attention_mask": [1, 1, 0, 0],
        "labels": [7, 0, IGNORE_INDEX, IGNORE_INDEX],
    }
