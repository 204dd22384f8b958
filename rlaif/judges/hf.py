"""The default backend: a causal LM run in-process with transformers, verdict read from one forward pass.

The queries of a pair form a tree — one prefix (instructions + conversation), two bodies (the two orders),
one tail per principle — and each level is encoded once on top of its parent's KV cache. The vocabulary
projection is computed only where a label token is read. P(first) = Σ p(A-tokens) / Σ p(A- and B-tokens).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..config import TransformersJudgeConfig
from ..records import Query, Verdict
from .base import Judge, too_long
from .models import resolve_model_dir
from .prompting import COT_ANSWER_CUE, ChatLayout, label_token_ids


@dataclass
class _Node:
    """A token segment continuing its parent's sequence; `reads` lists the queries answered at its end."""

    ids: list[int]
    parent: Optional["_Node"] = None
    children: dict[tuple, "_Node"] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)

    @property
    def depth_tokens(self) -> int:
        return len(self.ids) + (self.parent.depth_tokens if self.parent else 0)


class TransformersJudge(Judge):
    def __init__(self, config: TransformersJudgeConfig):
        super().__init__(config)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_dir(config.model, config.model_package, config.gguf_file, config.cache_dir,
                                 config.revision)
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        if config.dtype == "auto":
            # fp32 on CPU: bf16 matmuls are ~100x slower on CPUs without AMX.
            dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, config.dtype)
        revision = None if config.gguf_file else config.revision
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, revision=revision).to(self.device)
        self.model.eval()
        self.layout = ChatLayout(self.tokenizer)
        ids_a, ids_b = label_token_ids(self.tokenizer)
        self._label_ids = torch.tensor(ids_a + ids_b, device=self.device)
        self._n_a = len(ids_a)
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._tok_cache: OrderedDict[str, list[int]] = OrderedDict()
        self.tokens_processed = 0  # tokens actually run through the model (benchmarks read this)

    # -- tokenisation ------------------------------------------------------------------------------------------
    def _tokens(self, text: str) -> list[int]:
        """Segment-wise tokenisation with a small LRU: tails and instructions repeat across pairs."""
        ids = self._tok_cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            self._tok_cache[text] = ids
            if len(self._tok_cache) > 4096:
                self._tok_cache.popitem(last=False)
        else:
            self._tok_cache.move_to_end(text)
        return ids

    # -- the interface -----------------------------------------------------------------------------------------
    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        if self.config.cot.enabled:
            return self._judge_cot(queries)
        verdicts: list[Optional[Verdict]] = [None] * len(queries)
        roots: dict[str, _Node] = {}
        for i, q in enumerate(queries):
            seg = self.layout.segments(q.prefix_user, q.first, q.second, q.principle_text, cot=False)
            prefix, body, tail = self._tokens(seg.prefix), self._tokens(seg.body), self._tokens(seg.tail)
            n = len(prefix) + len(body) + len(tail)
            if n > self.config.max_length:
                verdicts[i] = too_long(n, self.config.max_length)
                continue
            if not self.config.share_prefix:  # every query on its own: the unshared reference path
                prefix, body, tail = prefix + body + tail, [], []
                key = f"{i}"
            else:
                key = seg.prefix
            root = roots.setdefault(key, _Node(prefix))
            node = root.children.setdefault(tuple(body), _Node(body, root))
            leaf = node.children.setdefault(tuple(tail), _Node(tail, node))
            leaf.reads.append(i)
        trees = sorted(roots.values(), key=lambda r: len(r.ids))  # similar lengths together: less padding
        b = self.config.batch_size
        for start in range(0, len(trees), b):
            for i, (p_first, mass, n_tokens) in self._run_trees(trees[start:start + b]).items():
                verdicts[i] = Verdict(p_first, label_mass=mass, prompt_tokens=n_tokens)
        return verdicts  # type: ignore[return-value]

    # -- the tree forward --------------------------------------------------------------------------------------
    def _run_trees(self, roots: list[_Node]) -> dict[int, tuple[float, float, int]]:
        """Encode the trees level by level on the parents' KV caches; read label logits at the leaves."""
        import torch

        out: dict[int, tuple[float, float, int]] = {}
        with torch.inference_mode():
            level = [(r, None) for r in roots]  # (node, index of its parent's row in the previous level)
            state = None
            while level:
                # Collapse chains: a node with a single child and no reads is merged with it, saving a call.
                level = [(self._collapse(n), p) for n, p in level]
                hidden, state = self._extend(state, [n.ids for n, _ in level], [p for _, p in level])
                reading = [(row, n) for row, (n, _) in enumerate(level) if n.reads]
                if reading:
                    probs, mass = self._read(hidden[[r for r, _ in reading]])
                    for k, (row, n) in enumerate(reading):
                        for qi in n.reads:
                            out[qi] = (probs[k], mass[k], n.depth_tokens)
                level = [(c, row) for row, (n, _) in enumerate(level) for c in n.children.values()]
        return out

    @staticmethod
    def _collapse(node: _Node) -> _Node:
        while not node.reads and len(node.children) == 1:
            child = next(iter(node.children.values()))
            node = _Node(node.ids + child.ids, node.parent, child.children, child.reads)
            for c in node.children.values():
                c.parent = node
        return node

    def _extend(self, state, seqs: list[list[int]], parents: list[Optional[int]]):
        """Run `seqs` (right-padded) as continuations of their parent rows. Returns the hidden state at each
        row's last real token and the new state (cache, attention mask, next positions)."""
        import torch
        from transformers import DynamicCache

        dev = self.device
        lengths = torch.tensor([len(s) for s in seqs], device=dev)
        width = int(lengths.max())
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long, device=dev)
        for r, s in enumerate(seqs):
            ids[r, :len(s)] = torch.tensor(s, dtype=torch.long, device=dev)
        new_mask = (torch.arange(width, device=dev)[None, :] < lengths[:, None]).long()
        if state is None:
            cache, mask, start = None, new_mask, torch.zeros(len(seqs), dtype=torch.long, device=dev)
        else:
            old_cache, old_mask, old_next = state
            idx = torch.tensor(parents, device=dev)
            cache = DynamicCache(ddp_cache_data=[(layer.keys[idx], layer.values[idx]) for layer in old_cache.layers])
            mask = torch.cat([old_mask[idx], new_mask], dim=1)
            start = old_next[idx]
        positions = start[:, None] + torch.arange(width, device=dev)[None, :]
        base = self.model.get_decoder()
        result = base(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                      use_cache=True)
        self.tokens_processed += int(lengths.sum())
        last = result.last_hidden_state[torch.arange(len(seqs), device=dev), lengths - 1]
        return last, (result.past_key_values, mask, start + lengths)

    def _read(self, hidden):
        """Label probabilities from final hidden states: the vocabulary projection is done only here."""
        import torch

        logits = self.model.get_output_embeddings()(hidden).float()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        logp = torch.log_softmax(logits, dim=-1)[:, self._label_ids]
        p_a = torch.logsumexp(logp[:, :self._n_a], dim=-1)
        p_b = torch.logsumexp(logp[:, self._n_a:], dim=-1)
        p_first = torch.sigmoid(p_a - p_b)  # = P(A) / (P(A) + P(B)), stable in log space
        mass = torch.exp(torch.logaddexp(p_a, p_b))
        return p_first.tolist(), mass.tolist()

    # -- chain of thought --------------------------------------------------------------------------------------
    def _judge_cot(self, queries: Sequence[Query]) -> list[Verdict]:
        """Generate a rationale per query, then read the label after 'Final answer: Response'."""
        import torch

        verdicts: list[Verdict] = []
        tok = self.tokenizer
        for q in queries:
            seg = self.layout.segments(q.prefix_user, q.first, q.second, q.principle_text, cot=True)
            prompt = self._tokens(seg.prefix) + self._tokens(seg.body) + self._tokens(seg.tail)
            budget = self.config.max_length - len(prompt) - 8
            if budget <= 0:
                verdicts.append(too_long(len(prompt), self.config.max_length))
                continue
            with torch.inference_mode():
                gen = self.model.generate(torch.tensor([prompt], device=self.device),
                                          attention_mask=torch.ones(1, len(prompt), dtype=torch.long,
                                                                    device=self.device),
                                          max_new_tokens=min(self.config.cot.max_new_tokens, budget),
                                          do_sample=False, pad_token_id=self._pad)
            new = gen[0, len(prompt):].tolist()
            text = tok.decode(new, skip_special_tokens=True)
            rationale = text.split("Final answer")[0].rstrip()
            scored = prompt + self._tokens(rationale) + self._tokens(COT_ANSWER_CUE)
            self.tokens_processed += len(prompt) + len(new)
            (p_first, mass, n), = self._run_trees([_Node(scored, reads=[0])]).values()
            verdicts.append(Verdict(p_first, label_mass=mass, rationale=rationale, raw=text,
                                    prompt_tokens=len(prompt), completion_tokens=len(new)))
        return verdicts

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
