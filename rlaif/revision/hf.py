"""Revising with a causal LM run in-process by transformers, batched across prompts, with the KV cache of the
conversation kept from step to step.

Each step of a chain (the first answer, a critique, a revision) is the whole conversation so far, rendered by the
model's chat template. The naive loop encodes all of it again at every step; here a batch's cache lives for the
whole chain, so a step encodes only the tokens that are new (the last reply and the next request), and the
few-shot examples every prompt starts with are encoded once for the batch. The result is what the naive loop
computes: a conversation's tokens are always its template's rendering, and a cached token is reused only where
it is that rendering's token at that position (where the template re-tokenises a reply differently, the cache is
cut back there and the rest encoded anew).

The batch shares one cache of width T. Per row, `valid` marks the columns that hold its conversation's tokens
(the rest are padding and tokens cut back); an additive 4-D mask lets each new token see its row's valid
columns before it, and itself. Decoding is our own loop (greedy, or temperature / top-k / top-p with one seeded
generator per row, so a prompt's draw does not depend on its batch), stopping a row at an end-of-turn token or
at max_new_tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch

from ..config.judge import TransformersJudgeConfig
from ..config.sampling import SamplingConfig
from ..models.loading import cache_argument, load_causal_lm
from ..policy.chat import prompt_ids
from .generators import Generator, Reply, Request, Session, too_long

# end-of-turn markers of common chat templates, besides the tokenizer's and the generation config's EOS
_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


def end_of_turn_ids(tokenizer, model) -> set[int]:
    """The token ids that end an assistant turn: EOS of the tokenizer and the generation config, and the chat
    templates' end-of-turn markers that the tokenizer has as single tokens."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids |= {vocab[m] for m in _END_OF_TURN if m in vocab}
    return {i for i in ids if i is not None}


@dataclass
class Timing:
    """Where a generator's time went: prefill (encoding conversations) and decode (generating), in seconds and
    tokens. The benchmark reads it."""

    prefill_s: float = 0.0
    decode_s: float = 0.0
    prefill_tokens: int = 0
    decode_tokens: int = 0


class TransformersGenerator(Generator):
    config: TransformersJudgeConfig

    def __init__(self, config: TransformersJudgeConfig, sampling: SamplingConfig):
        super().__init__(config, sampling)
        self.model, self.tokenizer, self.device = load_causal_lm(config)
        if not self.tokenizer.chat_template:
            raise ValueError(
                f"model {config.model} has no chat template: rlaif revise needs one to render the "
                f"conversation of critiques and revisions"
            )
        self.stop_ids = end_of_turn_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id
        self.pad = pad if pad is not None else min(self.stop_ids, default=0)
        self.cache_arg = cache_argument(self.model)
        self.timing = Timing()

    def session(self) -> Session:
        """A session that keeps the batch's KV cache from step to step (share_prefix: true), or the naive loop that
        encodes every step's whole conversation anew (share_prefix: false)."""
        return CachedSession(self, reuse=self.config.share_prefix)

    def generate(self, requests: list[Request]) -> list[Optional[Reply]]:
        replies = CachedSession(self, reuse=False).step(dict(enumerate(requests)))
        return [replies[i] for i in range(len(requests))]

    def close(self) -> None:
        self.model = None


@dataclass
class _Row:
    """One conversation in the batch cache: its tokens there, in order, and the columns that hold them."""

    ids: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)


class CachedSession(Session):
    """The conversations of one batch and their KV cache (see the module docstring). Rows are the chain indices
    the chain asks with; a row that sits a step out (its chain started from an input response, or failed) takes
    no compute beyond padding."""

    def __init__(self, generator: TransformersGenerator, reuse: bool):
        super().__init__(generator)
        self.gen, self.reuse = generator, reuse
        self._reset()

    def _reset(self) -> None:
        self.cache = None
        self.valid: Optional[torch.Tensor] = None  # [B, T] bool
        self.rows: dict[int, _Row] = {}
        self.index: dict[int, int] = {}  # chain -> row of the batch tensors
        self.shared: list[int] = []  # the prefix every row's cache starts with

    @torch.inference_mode()
    def step(self, requests: Mapping[int, Request]) -> dict[int, Optional[Reply]]:
        gen, s = self.gen, self.gen.sampling
        replies: dict[int, Optional[Reply]] = {}
        todo: dict[int, list[int]] = {}
        for chain, request in requests.items():
            ids = prompt_ids(gen.tokenizer, request.messages)
            if len(ids) + s.max_new_tokens > gen.config.max_length:
                replies[chain] = too_long(len(ids) + s.max_new_tokens, gen.config.max_length)
            else:
                todo[chain] = ids
        if not todo:
            return replies
        if not self.reuse or self.valid is None:
            self._start(todo)
        for chain in todo:
            if chain not in self.index:
                self._join(chain)
        t0 = time.perf_counter()
        new = {chain: self._cut_back(chain, ids) for chain, ids in todo.items()}
        gen.timing.prefill_tokens += sum(map(len, new.values()))
        logits = self._extend(new)
        gen.timing.prefill_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        out = self._decode(logits, {chain: requests[chain].seed for chain in todo})
        gen.timing.decode_s += time.perf_counter() - t0
        for chain, (tokens, finish) in out.items():
            gen.timing.decode_tokens += len(tokens)
            body = tokens[:-1] if finish == "eos" else tokens
            replies[chain] = Reply(
                gen.tokenizer.decode(body, skip_special_tokens=True).strip(),
                finish,
                prompt_tokens=len(todo[chain]),
                completion_tokens=len(tokens),
            )
        return replies

    # -- the batch cache ---------------------------------------------------------------------------------------
    def _start(self, todo: Mapping[int, list[int]]) -> None:
        """A fresh cache for these chains, holding the prefix they all share (the few-shot examples, the template's
        header) encoded once and copied to every row."""
        self._reset()
        self.index = {chain: i for i, chain in enumerate(todo)}
        self.rows = {chain: _Row() for chain in todo}
        seqs = list(todo.values())
        shared = len(seqs[0])
        for ids in seqs[1:]:
            shared = next((i for i, (a, b) in enumerate(zip(seqs[0], ids)) if a != b), min(shared, len(ids)))
        shared = min(shared, min(map(len, seqs)) - 1)  # every row keeps a token of its own to read logits at
        self.valid = torch.zeros((len(todo), 0), dtype=torch.bool, device=self.gen.device)
        if len(seqs) < 2 or shared < 1:
            return
        t0 = time.perf_counter()
        prefix = torch.tensor([seqs[0][:shared]], device=self.gen.device)
        out = self.gen.model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        self.cache = getattr(out, self.gen.cache_arg)
        self.cache.batch_repeat_interleave(len(seqs))
        self.valid = torch.ones((len(seqs), shared), dtype=torch.bool, device=self.gen.device)
        self.shared = list(seqs[0][:shared])
        for row in self.rows.values():
            row.ids, row.cols = list(self.shared), list(range(shared))
        self.gen.timing.prefill_tokens += shared
        self.gen.timing.prefill_s += time.perf_counter() - t0

    def _join(self, chain: int) -> None:
        """A row for a chain that sat out the steps so far (it started from an input response): a copy of the
        first row's cache of which only the shared prefix counts."""
        width = self.valid.shape[1]
        self.index[chain] = self.valid.shape[0]
        if self.cache is not None:
            self.cache.batch_select_indices(torch.tensor([*range(self.valid.shape[0]), 0], device=self.gen.device))
        row = torch.zeros((1, width), dtype=torch.bool, device=self.gen.device)
        row[0, : len(self.shared)] = True
        self.valid = torch.cat([self.valid, row])
        self.rows[chain] = _Row(list(self.shared), list(range(len(self.shared))))

    def _cut_back(self, chain: int, ids: list[int]) -> list[int]:
        """Keep the cached tokens of `chain` that begin `ids` (at least one token is left to encode, whose logits
        start the reply); mask out the rest. Returns the tokens to encode."""
        row = self.rows[chain]
        n = 0
        for a, b in zip(row.ids, ids):
            if a != b:
                break
            n += 1
        n = min(n, len(ids) - 1)
        if n < len(row.ids):
            self.valid[self.index[chain], row.cols[n:]] = False
            row.ids, row.cols = row.ids[:n], row.cols[:n]
        return ids[n:]

    def _extend(self, new: Mapping[int, list[int]]) -> torch.Tensor:
        """Encode each chain's new tokens on top of the cache in one forward (left-padded to a common width, so
        every row's last new token sits in the last column); returns the next-token logits of those chains."""
        gen, dev = self.gen, self.gen.device
        n_rows, width = self.valid.shape[0], max(map(len, new.values()))
        past = self.valid.shape[1]
        ids = torch.full((n_rows, width), gen.pad, dtype=torch.long, device=dev)
        pos = torch.zeros((n_rows, width), dtype=torch.long, device=dev)
        fresh = torch.zeros((n_rows, width), dtype=torch.bool, device=dev)
        for chain, tokens in new.items():
            r, row = self.index[chain], self.rows[chain]
            ids[r, width - len(tokens) :] = torch.tensor(tokens, device=dev)
            pos[r, width - len(tokens) :] = torch.arange(len(row.ids), len(row.ids) + len(tokens), device=dev)
            fresh[r, width - len(tokens) :] = True
            row.ids += tokens
            row.cols += range(past + width - len(tokens), past + width)
        self.valid = torch.cat([self.valid, fresh], dim=1)
        # each new token sees its row's valid columns up to itself, and always itself (a padding column too, so no
        # row of the softmax is empty)
        cols = torch.arange(past + width, device=dev)
        allowed = self.valid[:, None, :] & (cols[None, :] <= past + torch.arange(width, device=dev)[:, None])
        allowed |= cols[None, None, :] == past + torch.arange(width, device=dev)[None, :, None]
        dtype = gen.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill_(~allowed, torch.finfo(dtype).min)
        out = gen.model(
            input_ids=ids,
            position_ids=pos,
            attention_mask=mask[:, None],
            use_cache=True,
            logits_to_keep=1,
            **{gen.cache_arg: self.cache},
        )
        self.cache = getattr(out, gen.cache_arg)
        return out.logits[[self.index[c] for c in new], -1].float()

    def _decode(self, logits: torch.Tensor, seeds: Mapping[int, int]) -> dict[int, tuple[list[int], str]]:
        """Generate each chain's reply from its first logits: (tokens, "eos" | "length"). A reply's last token is
        not fed back (the next step re-encodes it as its template renders it)."""
        s, stop = self.gen.sampling, self.gen.stop_ids
        chains = list(seeds)
        rngs = {c: torch.Generator(device="cpu").manual_seed(seeds[c]) for c in chains}
        out: dict[int, list[int]] = {c: [] for c in chains}
        active = list(chains)
        for step in range(s.max_new_tokens):
            for c, token in zip(active, _pick(logits, s, [rngs[c] for c in active])):
                out[c].append(token)
            active = [c for c in active if out[c][-1] not in stop]
            if not active or step == s.max_new_tokens - 1:
                break
            logits = self._extend({c: [out[c][-1]] for c in active})
        return {c: (out[c], "eos" if out[c][-1] in stop else "length") for c in chains}


def _pick(logits: torch.Tensor, s: SamplingConfig, rngs: list[torch.Generator]) -> list[int]:
    """The next token of each row: greedy at temperature 0, else a draw after temperature, top-k and top-p (the
    smallest set of tokens whose probability reaches top_p), each row from its own generator."""
    if s.temperature == 0:
        return logits.argmax(dim=-1).tolist()
    logits = logits / s.temperature
    if s.top_k:
        kth = logits.topk(min(s.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    probs = torch.softmax(logits, dim=-1)
    if s.top_p < 1:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(dim=-1) - sorted_p >= s.top_p  # tokens after the set has reached top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
    return [int(torch.multinomial(p.cpu(), 1, generator=g)) for p, g in zip(probs, rngs)]
