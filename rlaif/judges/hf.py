"""The default backend: a causal LM run in-process with transformers, verdict read from one forward pass.

The queries of a pair form a tree — one prefix (instructions + conversation), two bodies (the two orders),
one tail per principle. The prefix is encoded once; the rest of the tree follows in one more forward pass on
its KV cache, flattened into a single row with a tree attention mask, so every token is encoded exactly once.
The vocabulary projection is computed only where a token is read. This file gives the two primitives of a local
judge, the next token's log-probabilities after given prompts and greedy generation; the verdicts are read from
them by reading.py, as for vLLM. A score judge's prompts form the same trees (one prefix per prompt, one branch
per response, a read per score prefix below it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..config.judge import TransformersJudgeConfig
from ..models.loading import cache_argument, load_causal_lm
from .reading import LocalJudge, Segments


@dataclass
class _Node:
    """A token segment continuing its parent's sequence; `reads` lists the prompts read at its end."""

    ids: list[int]
    parent: Optional["_Node"] = None
    children: dict[tuple, "_Node"] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)


class TransformersJudge(LocalJudge):
    def __init__(self, config: TransformersJudgeConfig):
        super().__init__(config)
        model, tokenizer, self.device = load_causal_lm(config)
        self._setup(model, tokenizer, self.device)
        self._use_tree_attention()

    def _setup(self, model, tokenizer, device) -> None:
        """Judge with `model` and `tokenizer` (already on `device`). The policy judge calls this with the policy
        being trained; what depends on the tokenizer is redone only when it changes."""
        self.model, self.device = model, device
        self.use_tokenizer(tokenizer)
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._cache_arg = cache_argument(model)
        self.tokens_processed = getattr(self, "tokens_processed", 0)  # tokens run through the model (benchmarks)
        self._tree_attention = False

    def _use_tree_attention(self) -> None:
        """Block-sparse tree attention for a model this judge loaded itself, on CPU, when the model's attention
        goes through transformers' attention interface (Llama, Qwen2, Mistral, SmolLM, ...)."""
        # lazy: torch's attention kernels, with the model
        from .tree_attention import register, supports

        if self.device.type == "cpu" and self.config.share_prefix and supports(self.model):
            register()
            self._tree_attention = True

    # -- the two primitives -----------------------------------------------------------------------------------
    def next_token(self, prompts: Sequence[Segments], read_ids: Sequence[int]) -> list[tuple[dict, Optional[str]]]:
        """The prompts as trees (prompts that start with the same segments share those nodes), `batch_size` trees
        per forward pass, shortest first so that similar lengths pad together; the log-probabilities of
        `read_ids` at the end of each prompt."""
        import torch

        roots: dict[tuple, _Node] = {}
        for k, segments in enumerate(prompts):
            node = roots.setdefault(tuple(segments[0]), _Node(list(segments[0])))
            for seg in segments[1:]:
                node = node.children.setdefault(tuple(seg), _Node(list(seg), node))
            node.reads.append(k)
        trees = sorted(roots.values(), key=lambda r: len(r.ids))
        columns = torch.tensor(list(read_ids), dtype=torch.long, device=self.device)
        out: list = [None] * len(prompts)
        for start in range(0, len(trees), self.config.batch_size):
            readers, states = self._tree_states(trees[start : start + self.config.batch_size])
            if not readers:
                continue
            for node, row in zip(readers, self._log_softmax(states)[:, columns].tolist()):
                top = dict(zip(read_ids, row))
                for k in node.reads:
                    out[k] = (top, None)
        return out

    def greedy(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """One prompt at a time through `generate` (a rationale is long and its prompts differ)."""
        import torch

        out = []
        for prompt, budget in zip(prompts, max_new_tokens):
            with torch.inference_mode():
                gen = self.model.generate(
                    torch.tensor([prompt], device=self.device),
                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=self.device),
                    max_new_tokens=budget,
                    do_sample=False,
                    pad_token_id=self._pad,
                )
            out.append(gen[0, len(prompt) :].tolist())
            self.tokens_processed += len(prompt) + len(out[-1])
        return out

    # -- the tree forward --------------------------------------------------------------------------------------
    def _tree_states(self, roots: list[_Node]):
        """Encode each tree in two forward passes: the prefixes (one row per tree, ordinary causal attention,
        kept as a KV cache), then each branch below a prefix (one order with all its principle tails) flattened
        into one row, where a tree attention mask lets each token see only its own path. Nothing is encoded
        twice. Returns the nodes that answer a query and the final hidden state at the last token of each."""
        import torch
        from transformers import DynamicCache

        readers: list[_Node] = []
        states = []
        with torch.inference_mode():
            hidden, (cache, prefix_mask, prefix_len) = self._extend_prefixes([r.ids for r in roots])
            for row, root in enumerate(roots):
                if root.reads:
                    readers.append(root)
                    states.append(hidden[row])
            # One row per child of a prefix (per order): its principle tails share the row under a tree mask,
            # so masked tail-against-tail attention stays within one order.
            groups = [(row, child) for row, root in enumerate(roots) for child in root.children.values()]
            if groups:
                idx = torch.tensor([row for row, _ in groups], device=self.device)
                flat = [self._flatten(child) for _, child in groups]
                if len(groups) != len(roots):  # rows no longer match the prefixes: gather their caches
                    cache = DynamicCache(
                        ddp_cache_data=[(layer.keys[idx], layer.values[idx]) for layer in cache.layers]
                    )
                hidden = self._extend_trees(cache, prefix_mask[idx], prefix_len[idx], flat)
                for row, (_, _, spans) in enumerate(flat):
                    for node, _, end, _ in spans:
                        if node.reads:
                            readers.append(node)
                            states.append(hidden[row, end - 1])
        return readers, (torch.stack(states) if states else None)

    @staticmethod
    def _flatten(branch: _Node):
        """`branch` and its descendants in depth-first order: token ids, each token's position after the
        prefix, and (node, begin, end, ancestor span indices) per node."""
        ids: list[int] = []
        positions: list[int] = []
        spans: list[tuple[_Node, int, int, list[int]]] = []

        def visit(node: _Node, offset: int, ancestors: list[int]) -> None:
            begin = len(ids)
            ids.extend(node.ids)
            positions.extend(range(offset, offset + len(node.ids)))
            spans.append((node, begin, len(ids), ancestors))
            me = len(spans) - 1
            for child in node.children.values():
                visit(child, offset + len(node.ids), ancestors + [me])

        visit(branch, 0, [])
        return ids, positions, spans

    def _extend_prefixes(self, seqs: list[list[int]]):
        """Right-padded causal forward over the prefixes; returns last hidden states, cache, mask and lengths."""
        import torch

        dev = self.device
        lengths = torch.tensor([len(s) for s in seqs], device=dev)
        width = int(lengths.max())
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long, device=dev)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s, dtype=torch.long, device=dev)
        mask = (torch.arange(width, device=dev)[None, :] < lengths[:, None]).long()
        if self._tree_attention:  # right padding: plain causal attention (upper blocks skipped) is exact for
            placeholder = torch.zeros((len(seqs), 1, 1, 1), dtype=self.model.dtype, device=dev)  # real tokens
            result = self._tree_forward(input_ids=ids, attention_mask=placeholder, use_cache=True, rlaif_tree="causal")
        else:
            result = self.model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=True)
        self.tokens_processed += int(lengths.sum())
        last = result.last_hidden_state[torch.arange(len(seqs), device=dev), lengths - 1]
        return last, (getattr(result, self._cache_arg), mask.bool(), lengths)

    def _extend_trees(self, cache, prefix_mask, prefix_len, flat):
        """One forward over the flattened trees on top of the prefix cache: on CPU with block-sparse tree attention
        (rlaif/judges/tree_attention.py), otherwise with a dense 4-D tree attention mask."""
        import torch

        dev = self.device
        n, width = len(flat), max(len(f[0]) for f in flat)
        ids = torch.full((n, width), self._pad, dtype=torch.long, device=dev)
        pos = torch.zeros((n, width), dtype=torch.long, device=dev)
        for row, (tokens, offsets, _) in enumerate(flat):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=dev)
            pos[row, : len(tokens)] = torch.tensor(offsets, dtype=torch.long, device=dev) + prefix_len[row]
        inputs = {"input_ids": ids, "position_ids": pos, self._cache_arg: cache, "use_cache": False}
        plan = self._tree_plan(flat, prefix_mask)
        if plan is not None:
            placeholder = torch.zeros((n, 1, 1, 1), dtype=self.model.dtype, device=dev)  # passed on, never read
            result = self._tree_forward(attention_mask=placeholder, rlaif_tree=plan, **inputs)
        else:
            result = self.model.get_decoder()(attention_mask=self._tree_mask(flat, prefix_mask, width), **inputs)
        self.tokens_processed += sum(len(f[0]) for f in flat)
        return result.last_hidden_state

    def _tree_mask(self, flat, prefix_mask, width: int):
        """The dense 4-D additive mask [rows, 1, width, prefix + width]: each token sees its tree's prefix, its
        ancestors' segments whole and its own segment causally."""
        import torch

        dev, dtype = self.device, self.model.dtype
        n, p_width = len(flat), prefix_mask.shape[1]
        allowed = torch.zeros((n, width, p_width + width), dtype=torch.bool, device=dev)
        allowed[:, :, :p_width] = prefix_mask[:, None, :]  # every token sees its tree's whole prefix
        causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
        for row, (tokens, _, spans) in enumerate(flat):
            if not tokens:
                allowed[row, :, p_width] = True  # an empty row still needs one visible key
                continue
            for node, begin, end, ancestors in spans:
                rows = slice(begin, end)
                for a in ancestors:  # whole ancestor segments
                    _, a_begin, a_end, _ = spans[a]
                    allowed[row, rows, p_width + a_begin : p_width + a_end] = True
                allowed[row, rows, p_width + begin : p_width + end] = causal[: end - begin, : end - begin]
            pad = slice(len(tokens), width)
            allowed[row, pad, p_width:] = causal[pad]  # padding: harmless causal rows, never read
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None]

    def _tree_forward(self, **inputs):
        """The decoder run with the "rlaif_tree" attention (rlaif/judges/tree_attention.py) for this call only."""
        # lazy: torch's attention kernels, with the model
        from .tree_attention import NAME

        config = self.model.config
        before = config._attn_implementation
        config._attn_implementation = NAME
        try:
            return self.model.get_decoder()(**inputs)
        finally:
            config._attn_implementation = before

    def _tree_plan(self, flat, prefix_mask):
        """The block-sparse plan for these rows, or None: off the CPU (dense kernels are fast there), for models
        whose attention does not go through transformers' attention interface, or for trees of another shape."""
        if not self._tree_attention:
            return None
        # lazy: torch's attention kernels, with the model
        from .tree_attention import TreePlan, plan_rows

        rows = plan_rows(flat)
        return None if rows is None else TreePlan(prefix_mask, rows)

    def _log_softmax(self, hidden):
        """Next-token log-probabilities from final hidden states: the vocabulary projection is done only here."""
        import torch

        with torch.inference_mode():
            logits = self.model.get_output_embeddings()(hidden).float()
            cap = getattr(self.model.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            return torch.log_softmax(logits, dim=-1)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
