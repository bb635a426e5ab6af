"""Generating answers with a causal LM: chat prompts through the model's chat template, greedy or sampled. Used for
the sample generations of training reports and by the serving stage."""

from __future__ import annotations

from typing import Any


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation up to and including the assistant's turn header."""
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True)
    return list(encoded["input_ids"])


def generate_answers(
    model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], max_new_tokens: int = 48
) -> list[str]:
    """Greedy answers to each conversation (its turns before the last assistant turn)."""
    import torch

    answers = []
    was_training = model.training
    model.eval()
    try:
        for messages in conversations:
            prompt = [m for m in messages]
            while prompt and prompt[-1]["role"] == "assistant":
                prompt.pop()
            ids = torch.tensor([chat_prompt_ids(tokenizer, prompt)], device=model.device)
            with torch.no_grad():
                output = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            answers.append(tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return answers
