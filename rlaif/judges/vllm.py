"""The vLLM backend: the offline engine (`vllm.LLM`) reads P(first) from the log-probabilities of the label token.

The prompt is the one the transformers backend builds, token for token: the chat-template text of
`ChatLayout.segments()`, tokenised segment by segment (prefix, body, tail; no special tokens added) and handed to
the engine as token ids, so both backends score identical inputs. Every query of a pair shares the prefix, and
vLLM's automatic prefix caching reuses its KV cache across the two orders and the principles.

P(first) = m_A / (m_A + m_B), where m_X sums exp(logprob) over the tokens that read as the label X ("A", " A", …)
among the `top_logprobs` alternatives of the first generated position; label tokens outside them count as zero.
When no label token is among them the verdict fails; it never gets a made-up probability. A score judge (mode:
score) sends one prompt per response at the rating cue, and one more per score prefix ("1" before "0"), all
sharing the response's prompt through prefix caching; score tokens outside the top log-probabilities count as
zero (scores.py reads the distribution).

vllm is imported only when a VLLMJudge is built. Its engine starts worker processes: build the judge under an
`if __name__ == "__main__":` guard (or in a function called from one) in scripts.
"""

from __future__ import annotations

import gc
import math
from typing import Any, Optional, Sequence

from ..config.judge import VLLMJudgeConfig
from ..models.loading import quiet_loading, resolve_model_dir
from ..records import Query, ScoreQuery, ScoreVerdict, Verdict
from .base import Judge, too_long
from .logprobs import InvalidLogprob, checked_logprob
from .prompting import COT_ANSWER_CUE, LABELS, ChatLayout, label_token_ids
from .scores import ScoreTokens, normalised, value_masses


def label_masses(top: Optional[dict], label_ids: tuple[Sequence[int], Sequence[int]]) -> tuple[float, float]:
    """Probability mass on the 'A' and on the 'B' label tokens among one position's top log-probabilities
    (vLLM's {token_id: Logprob} dict; entries may also be plain floats). InvalidLogprob for NaN, +inf or a
    positive value: a model that computes those has broken numerics, and its verdict is no verdict."""
    masses = []
    for ids in label_ids:
        m = 0.0
        for tid in ids:
            lp = top.get(tid) if top else None
            lp = getattr(lp, "logprob", lp)
            if lp is not None:
                m += math.exp(checked_logprob(lp, f"token id {tid}"))
        masses.append(m)
    return masses[0], masses[1]


def verdict_from_logprobs(
    top: Optional[dict],
    label_ids: tuple[Sequence[int], Sequence[int]],
    generated: str,
    top_k: int,
    prompt_tokens: int,
    completion_tokens: int,
    raw: Optional[str] = None,
    rationale: Optional[str] = None,
) -> Verdict:
    """A Verdict from the top log-probabilities of the verdict position: P(first) = m_A / (m_A + m_B).
    `generated` is the token the engine generated there; `raw` defaults to it."""
    raw = generated if raw is None else raw
    try:
        m_a, m_b = label_masses(top, label_ids)
    except InvalidLogprob as e:
        return Verdict(
            p_first=None,
            raw=raw,
            rationale=rationale,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            error=f"the engine returned an {e}",
        )
    mass = m_a + m_b
    if mass <= 0.0:
        return Verdict(
            p_first=None,
            raw=raw,
            rationale=rationale,
            label_mass=0.0,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            error=f"no label token ({LABELS[0]!r} or {LABELS[1]!r}) among the top {top_k} "
            f"log-probabilities of the verdict position; the model generated {generated!r}",
        )
    return Verdict(
        p_first=m_a / mass,
        raw=raw,
        rationale=rationale,
        label_mass=mass,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        extra={"verdict_source": "logprobs"},
    )


def _logprob(entry, token_id: int) -> float:
    """One token's log-probability from vLLM's top dict (-inf when it is not among them)."""
    if entry is None:
        return -math.inf
    return checked_logprob(getattr(entry, "logprob", entry), f"token id {token_id}")


def _default_dtype() -> str:
    """auto: float32 on CPU, bfloat16 on an accelerator."""
    try:
        from vllm.platforms import current_platform

        return "float32" if current_platform.is_cpu() else "bfloat16"
    except Exception:  # pragma: no cover - platform detection is vLLM-version dependent
        import torch

        return "bfloat16" if torch.cuda.is_available() else "float32"


class VLLMJudge(Judge):
    """Judge with the offline vLLM engine; see the module docstring.

    `engine_kwargs` are passed on to `vllm.LLM` as they are (e.g. enforce_eager=True, seed); they are not
    part of the config, so they must never change a verdict.
    """

    config: VLLMJudgeConfig

    def __init__(self, config: VLLMJudgeConfig, **engine_kwargs: Any):
        super().__init__(config)
        from transformers import AutoTokenizer
        from vllm import LLM

        with quiet_loading():
            self.model_dir = resolve_model_dir(config.model, config.model_package, config.gguf_file)
            tokenizer_source = config.tokenizer or self.model_dir
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
        self.layout = ChatLayout(self.tokenizer)
        self.label_ids = label_token_ids(self.tokenizer)
        self.cue_ids: list[int] = self.tokenizer.encode(COT_ANSWER_CUE, add_special_tokens=False)
        self._prefix_cache: dict[str, list[int]] = {}

        kwargs: dict[str, Any] = dict(
            model=self.model_dir,
            tokenizer=tokenizer_source,
            dtype=_default_dtype() if config.dtype == "auto" else config.dtype,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enable_prefix_caching=config.enable_prefix_caching,
            max_logprobs=max(config.top_logprobs, 20),
        )
        if config.max_model_len is not None:
            kwargs["max_model_len"] = config.max_model_len
        kwargs.update(engine_kwargs)
        self.dtype = kwargs["dtype"]
        self._llm = LLM(**kwargs)
        self.max_model_len: int = int(self._llm.llm_engine.model_config.max_model_len)

    # -- prompts -------------------------------------------------------------------------------------------

    def encode(self, q: Query | ScoreQuery) -> list[int]:
        """The judge prompt of one query as token ids (identical to the transformers backend's)."""
        if isinstance(q, ScoreQuery):
            seg = self.layout.score_segments(q.prefix_user, q.response)
        else:
            seg = self.layout.segments(q.prefix_user, q.first, q.second, q.principle_text, cot=self.config.cot.enabled)
        prefix = self._prefix_cache.get(seg.prefix)
        if prefix is None:
            if len(self._prefix_cache) > 4096:
                self._prefix_cache.clear()
            prefix = self._prefix_cache[seg.prefix] = self.tokenizer.encode(seg.prefix, add_special_tokens=False)
        return (
            prefix
            + self.tokenizer.encode(seg.body, add_special_tokens=False)
            + self.tokenizer.encode(seg.tail, add_special_tokens=False)
        )

    # -- judging -------------------------------------------------------------------------------------------

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        if self._llm is None:
            raise RuntimeError("this VLLMJudge is closed")
        verdicts: list[Verdict] = []
        bs = self.config.batch_size
        for start in range(0, len(queries), bs):
            verdicts.extend(self._judge_chunk(queries[start : start + bs]))
        return verdicts

    def _judge_chunk(self, queries: Sequence[Query]) -> list[Verdict]:
        cot = self.config.cot.enabled
        # Room the verdict needs after the prompt: the label token; with CoT also the answer cue and a rationale
        # (the same 8-token margin as the transformers backend, at least cue + 2).
        reserve = max(8, len(self.cue_ids) + 2) if cot else 1
        out: list[Optional[Verdict]] = [None] * len(queries)
        todo: list[tuple[int, list[int]]] = []
        for i, q in enumerate(queries):
            try:
                ids = self.encode(q)
            except Exception as e:  # a query that cannot be rendered fails alone
                out[i] = Verdict(p_first=None, error=f"could not build the judge prompt: {type(e).__name__}: {e}")
                continue
            if len(ids) + reserve > self.max_model_len:
                out[i] = self._too_long(len(ids), reserve)
                continue
            todo.append((i, ids))
        if todo:
            results = self._run_cot(todo, reserve) if cot else self._run_plain(todo)
            for (i, _), v in zip(todo, results):
                out[i] = v
        return out  # type: ignore[return-value]

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreVerdict]:
        if self._llm is None:
            raise RuntimeError("this VLLMJudge is closed")
        if getattr(self, "_score_tokens", None) is None:
            self._score_tokens = ScoreTokens(self.tokenizer, self.config.score.values, self.layout.score_cue)
        tokens = self._score_tokens
        reserve = 1 + max((len(ids) for ids in tokens.prefix_ids.values()), default=0)
        out: list[Optional[ScoreVerdict]] = [None] * len(queries)
        prompts: list[tuple[int, str, list[int]]] = []  # (query, score prefix read there, prompt ids)
        for i, q in enumerate(queries):
            ids = self.encode(q)
            if len(ids) + reserve > self.max_model_len:
                v = self._too_long(len(ids), reserve)
                out[i] = ScoreVerdict(None, error=v.error, prompt_tokens=len(ids))
                continue
            prompts += [(i, "", ids)] + [(i, text, ids + extra) for text, extra in tokens.prefix_ids.items()]
        rows: dict[int, dict[str, list[float]]] = {}
        errors: dict[int, str] = {}
        for start in range(0, len(prompts), self.config.batch_size):
            chunk = prompts[start : start + self.config.batch_size]
            for (i, text, _), r in zip(chunk, self._generate([p for _, _, p in chunk], self._verdict_params())):
                top = r.outputs[0].logprobs[0] if r.outputs[0].logprobs else {}
                try:
                    rows.setdefault(i, {})[text] = [_logprob(top.get(tid), tid) for tid in tokens.read_ids]
                except InvalidLogprob as e:
                    errors[i] = f"the engine returned an {e}"
        for i, by_prefix in rows.items():
            n = len(self.encode(queries[i]))
            if i in errors:
                out[i] = ScoreVerdict(None, error=errors[i], prompt_tokens=n)
                continue
            probs, mass, error = normalised(value_masses(tokens.texts, tokens.reads_from(by_prefix)))
            if error and mass == 0.0:
                error += f" (none among the top {self.config.top_logprobs} log-probabilities)"
            out[i] = ScoreVerdict(probs, error=error, mass=mass, source="logprobs", prompt_tokens=n)
        return out  # type: ignore[return-value]

    def _too_long(self, n_tokens: int, reserve: int) -> Verdict:
        v = too_long(n_tokens, self.max_model_len, "max_model_len")
        v.error += f" (less the {reserve} token(s) the verdict needs)"
        return v

    def _verdict_params(self):
        from vllm import SamplingParams

        return SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=self.config.top_logprobs, skip_special_tokens=False
        )

    def _generate(self, prompts: list[list[int]], params) -> list:
        from vllm.inputs import TokensPrompt

        return self._llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False)

    def _read(
        self,
        result,
        prompt_tokens: int,
        completion_tokens: int,
        raw: Optional[str] = None,
        rationale: Optional[str] = None,
    ) -> Verdict:
        gen = result.outputs[0]
        top = gen.logprobs[0] if gen.logprobs else None
        return verdict_from_logprobs(
            top,
            self.label_ids,
            gen.text,
            self.config.top_logprobs,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            raw=raw,
            rationale=rationale,
        )

    def _run_plain(self, todo: list[tuple[int, list[int]]]) -> list[Verdict]:
        results = self._generate([ids for _, ids in todo], self._verdict_params())
        return [
            self._read(r, prompt_tokens=len(ids), completion_tokens=len(r.outputs[0].token_ids))
            for (_, ids), r in zip(todo, results)
        ]

    def _run_cot(self, todo: list[tuple[int, list[int]]], reserve: int) -> list[Verdict]:
        """Rationale first (greedy), then the label token after prompt + rationale + COT_ANSWER_CUE — built the
        way the transformers backend builds it (rationale cut before any 'Final answer' it wrote itself,
        re-tokenised on its own), so both backends score the same ids."""
        from vllm import SamplingParams

        params = [
            SamplingParams(
                max_tokens=min(self.config.cot.max_new_tokens, self.max_model_len - len(ids) - reserve), temperature=0.0
            )
            for _, ids in todo
        ]
        firsts = self._generate([ids for _, ids in todo], params)
        out: list[Optional[Verdict]] = [None] * len(todo)
        second: list[tuple[int, list[int], str, str, int]] = []  # (row, ids to score, text, rationale, n_gen)
        for row, ((_, ids), r) in enumerate(zip(todo, firsts)):
            new = list(r.outputs[0].token_ids)
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            rationale = text.split("Final answer")[0].rstrip()
            scored = (
                ids
                + self.tokenizer.encode(rationale, add_special_tokens=False)
                + self.tokenizer.encode(COT_ANSWER_CUE, add_special_tokens=False)
            )
            if len(scored) + 1 > self.max_model_len:  # a rationale that re-tokenises longer than generated
                v = self._too_long(len(scored), 1)
                v.raw, v.rationale, v.completion_tokens = text, rationale, len(new)
                out[row] = v
                continue
            second.append((row, scored, text, rationale, len(new)))
        if second:
            results = self._generate([s[1] for s in second], self._verdict_params())
            for (row, _, text, rationale, n_gen), r in zip(second, results):
                out[row] = self._read(
                    r,
                    prompt_tokens=len(todo[row][1]),
                    completion_tokens=n_gen + len(r.outputs[0].token_ids),
                    raw=text,
                    rationale=rationale,
                )
        return out  # type: ignore[return-value]

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        for obj in (core, engine):
            shutdown = getattr(obj, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    pass
                break
        del llm, engine, core
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
