"""How text becomes a model's token ids: a prompt (text, or chat messages) and a response go through the
tokenizer's chat template when it has one (a text prompt is one user turn), otherwise through plain text with EOS
after the response. Sampling, training pairs and reward-model scoring all encode here, so a response is the same
tokens wherever it is read.
"""

from __future__ import annotations

from typing import Optional


def chat_turns(prompt) -> list[dict]:
    """A prompt as chat messages: a text prompt is one user turn."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt ready for the assistant's turn (chat template when the tokenizer has one)."""
    if tokenizer.chat_template:
        return list(
            tokenizer.apply_chat_template(
                chat_turns(prompt), add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
    if not isinstance(prompt, str):
        raise ValueError("a conversational prompt needs a tokenizer with a chat template")
    return list(tokenizer(prompt)["input_ids"])


def _common_prefix(x: list[int], y: list[int]) -> int:
    n = 0
    for a, b in zip(x, y):
        if a != b:
            break
        n += 1
    return n


def encode(tokenizer, prompt, response: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids) for one response. The response starts where the tokenisations of the prompt
    alone and of prompt+response stop agreeing (templates and merges can change the prompt's last tokens)."""
    alone = prompt_ids(tokenizer, prompt)
    if tokenizer.chat_template:
        full = tokenizer.apply_chat_template(
            chat_turns(prompt) + [{"role": "assistant", "content": response}], tokenize=True, return_dict=True
        )["input_ids"]
    else:
        full = tokenizer(prompt + response + (tokenizer.eos_token or ""))["input_ids"]
    n = _common_prefix(alone, full)
    return list(full[:n]), list(full[n:])


def encode_pair(
    tokenizer, prompt, response_a: str, response_b: str, max_length: int, whole: bool
) -> Optional[tuple[list[int], list[int], list[int]]]:
    """(prompt ids, a ids, b ids) of a pair: the prompt is the tokens both encodings share, so prompt + a and
    prompt + b are each response's own encoding. None when the pair does not fit `max_length`: with `whole` a
    pair must fit entirely (a reward model reads the last token); otherwise only its prompt must, and responses
    are cut later."""
    prompt_a, a_ids = encode(tokenizer, prompt, response_a)
    prompt_b, b_ids = encode(tokenizer, prompt, response_b)
    n = _common_prefix(prompt_a, prompt_b)
    shared, a_ids, b_ids = prompt_a[:n], prompt_a[n:] + a_ids, prompt_b[n:] + b_ids
    longest = len(shared) + max(len(a_ids), len(b_ids))
    if (whole and longest > max_length) or len(shared) >= max_length:
        return None
    return shared, a_ids, b_ids
