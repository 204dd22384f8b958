"""How a local judge (transformers, vLLM) reads its verdict, written once over the two things a backend does:
the log-probabilities of the next token after given prompts (`next_token`), and greedy generation (`greedy`).

A pairwise verdict is read at the answer cue: P(first) = m_A / (m_A + m_B), where m_X sums the probability of
every token that reads as the label X ("A", " A", …). A backend that shows only its top log-probabilities (vLLM)
counts a label token outside them as zero, and a verdict with no label token there fails; it never gets a made-up
probability. With chain of thought the rationale is generated greedily first, cut before any "Final answer" it
wrote itself and re-tokenised, and the label is read after prompt + rationale + the cue.

A score judge's verdict (mode: score; d-RLAIF, Lee et al. 2023, sec. 2.3) is the probabilities of the score tokens
after the rating cue, normalised into a distribution over the scale, whose mean is the expected score, rescaled to
[-1, 1] as the reward. A score may take more than one token ("10" is "1" then "0" for many tokenizers), so the
model is read at the cue and again after each proper prefix of a score ("1"): `reads[prefix][piece]` is the
log-probability that the next token reads `piece` (whitespace stripped, summed over spellings such as "1" and
" 1") once the reply so far spells `prefix`. Then P(reply spells "10") = P("10") + P("1")·P("0" | "1"), and P(reply
is exactly "1") = P("1")·(1 − P("0" | "1")): a "1" that goes on to "0" is no 1. Where a backend cannot read after
a prefix (an HTTP server shows only the path it generated, replies.py), the prefix is taken to end there.

Every log-probability is checked as it is read (`checked_logprob`): a broken server or a numerically broken model
(Infinity, NaN, a positive value) fails the verdict with an error that says so, instead of a NaN p_a or a label
mass above 1 stored as `ok`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence

from ..numbers import distribution_problem  # noqa: F401 - the rule score readers of this module apply
from ..records import Query, ScoreQuery, ScoreVerdict, Verdict
from .base import Judge, too_long
from .prompting import COT_ANSWER_CUE, LABELS, ChatLayout, label_token_ids

# A softmax computed in float16/bfloat16 can put a near-certain token a hair above 0; more than this is no rounding.
LOGPROB_TOLERANCE = 1e-4

Reads = Mapping[str, Mapping[str, float]]


class InvalidLogprob(ValueError):
    """A log-probability that no softmax produces."""


def checked_logprob(value: Any, token: Any) -> float:
    """`value` as a log-probability <= 0; raises InvalidLogprob for NaN, +inf or a value above LOGPROB_TOLERANCE
    (TypeError/ValueError for what is not a number at all)."""
    logprob = float(value)
    if math.isnan(logprob) or logprob > LOGPROB_TOLERANCE:
        raise InvalidLogprob(
            f"invalid log-probability {logprob!r} for the token {token!r} (a log-probability is a finite number <= 0)"
        )
    return min(logprob, 0.0)


def _logprob(top: Optional[Mapping], token_id: int) -> float:
    """One token's checked log-probability from a {token id: logprob} dict (vLLM's Logprob objects or plain
    floats); -inf when it is not among them."""
    entry = top.get(token_id) if top else None
    if entry is None:
        return -math.inf
    return checked_logprob(getattr(entry, "logprob", entry), f"token id {token_id}")


def label_masses(top: Optional[Mapping], label_ids: tuple[Sequence[int], Sequence[int]]) -> tuple[float, float]:
    """Probability mass on the 'A' and on the 'B' label tokens among one position's log-probabilities ({token id:
    logprob}); InvalidLogprob for a number that is no log-probability."""
    m_a, m_b = (sum(math.exp(_logprob(top, tid)) for tid in ids) for ids in label_ids)
    return m_a, m_b


def verdict_from_logprobs(
    top: Optional[Mapping],
    label_ids: tuple[Sequence[int], Sequence[int]],
    generated: Optional[str],
    top_k: Optional[int],
    prompt_tokens: int,
    completion_tokens: int,
    raw: Optional[str] = None,
    rationale: Optional[str] = None,
) -> Verdict:
    """A Verdict from the log-probabilities of the verdict position ({token id: logprob}; `top_k`: how many a
    backend that shows only its top ones showed, None when it shows every label token): P(first) = m_A / (m_A +
    m_B). `generated` is the token the engine generated there, if it generated one; `raw` defaults to it."""
    verdict = Verdict(
        None,
        raw=generated if raw is None else raw,
        rationale=rationale,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    try:
        m_a, m_b = label_masses(top, label_ids)
    except InvalidLogprob as e:
        verdict.error = f"the engine returned an {e}"
        return verdict
    verdict.label_mass = m_a + m_b
    if verdict.label_mass <= 0.0:
        verdict.error = (
            f"no label token ({LABELS[0]!r} or {LABELS[1]!r}) among the top {top_k} "
            f"log-probabilities of the verdict position; the model generated {generated!r}"
        )
        return verdict
    verdict.p_first = m_a / verdict.label_mass
    verdict.extra["verdict_source"] = "logprobs"
    return verdict


def value_masses(texts: Sequence[str], reads: Reads) -> list[float]:
    """P(the reply spells exactly `text`) for each score text, unnormalised (see the module docstring)."""

    def continuing(prefix: str) -> float:
        return sum(
            math.exp(lp)
            for piece, lp in reads.get(prefix, {}).items()
            if piece and any(t != prefix and t.startswith(prefix + piece) for t in texts)
        )

    def spelled(prefix: str, rest: str) -> float:
        total = 0.0
        for piece, lp in reads.get(prefix, {}).items():
            if piece and rest.startswith(piece):
                after = rest[len(piece) :]
                p = math.exp(lp)
                total += p * (spelled(prefix + piece, after) if after else max(0.0, 1.0 - continuing(prefix + piece)))
        return total

    return [spelled("", t) for t in texts]


def normalised(masses: Sequence[float]) -> tuple[Optional[list[float]], float, Optional[str]]:
    """(distribution, total mass, error): the masses divided by their sum; an error when it is 0 or not finite."""
    total = float(sum(masses))
    if not math.isfinite(total) or any(not math.isfinite(m) or m < 0 for m in masses):
        return None, total, f"score probabilities are not finite non-negative numbers: {list(masses)!r}"
    if total <= 0.0:
        return None, total, "the judge put no probability on any score token"
    return [m / total for m in masses], total, None


def expected_score(probs: Sequence[float], values: Sequence[int]) -> float:
    """Σ s·P(s) (Lee et al. 2023, sec. 2.3)."""
    return float(sum(v * p for v, p in zip(values, probs)))


def rescaled(score: float, low: int, high: int, invert: bool = False) -> float:
    """The expected score mapped linearly from [low, high] to [-1, 1]; negated for an inverted principle (one
    that asks for the worse response, so a high rating means a rejected response)."""
    r = 2.0 * (score - low) / (high - low) - 1.0
    return -r if invert else r


def continuation_prefixes(texts: Sequence[str]) -> list[str]:
    """The proper, non-empty prefixes of the score texts ("1" for "10"): where the model is read a second time."""
    return sorted({t[:k] for t in texts for k in range(1, len(t))} - {""}, key=lambda x: (len(x), x))


def pieces_after(prefix: str, texts: Sequence[str]) -> list[str]:
    """Every piece the next token may read once the reply spells `prefix` ("0" and "" … after "1")."""
    return sorted(
        {
            t[len(prefix) : k]
            for t in texts
            if t.startswith(prefix) and len(t) > len(prefix)
            for k in range(len(prefix) + 1, len(t) + 1)
        }
    )


class ScoreTokens:
    """The vocabulary ids of the score pieces of one tokenizer, and the reads a transformers or vLLM backend makes
    (at the cue, and after each prefix with the ids that spell it)."""

    def __init__(self, tokenizer, values: Sequence[int], cue: str):
        self.texts = [str(v) for v in values]
        wanted = {p for prefix in [""] + continuation_prefixes(self.texts) for p in pieces_after(prefix, self.texts)}
        decoded = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        self.groups: dict[str, list[int]] = {}  # piece -> every token that reads as it ("1", " 1", "▁1" …)
        for i, text in enumerate(decoded):
            if text.strip() in wanted:
                self.groups.setdefault(text.strip(), []).append(i)
        missing = [t for t in self.texts if not _spellable(t, self.groups)]
        if missing:
            raise ValueError(f"the judge's tokenizer has no tokens that spell the scores {', '.join(missing)}")
        cue_ids = tokenizer(cue, add_special_tokens=False).input_ids
        self.prefix_ids: dict[str, list[int]] = {}  # prefix -> the ids that follow the cue to spell it
        for prefix in continuation_prefixes(self.texts):
            ids = tokenizer(cue + prefix, add_special_tokens=False).input_ids
            self.prefix_ids[prefix] = (
                ids[len(cue_ids) :]
                if ids[: len(cue_ids)] == cue_ids
                else tokenizer(prefix, add_special_tokens=False).input_ids
            )
        self.read_ids = sorted({i for ids in self.groups.values() for i in ids})

    def reads_from(self, logp_rows: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
        """`logp_rows[prefix]`: log-probabilities of `read_ids` at that read; returns the reads by piece."""
        index = {i: k for k, i in enumerate(self.read_ids)}
        out: dict[str, dict[str, float]] = {}
        for prefix, row in logp_rows.items():
            pieces = {}
            for piece in pieces_after(prefix, self.texts):
                ids = self.groups.get(piece)
                if ids:
                    pieces[piece] = _logsumexp([row[index[i]] for i in ids])
            out[prefix] = pieces
        return out


def _spellable(text: str, pieces: Mapping[str, object]) -> bool:
    return text in pieces or any(
        text.startswith(p) and _spellable(text[len(p) :], pieces) for p in pieces if p and len(p) < len(text)
    )


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


Segments = tuple[list[int], ...]  # a prompt as token segments: what precedes a read is shared by the prompts it starts


class LocalJudge(Judge):
    """A judge whose model runs here (transformers, vLLM): the queries become token prompts, and their verdicts
    are read by the rules above from two primitives a backend provides, `next_token` and `greedy`. A backend sets
    its tokenizer with `use_tokenizer` and says how long a prompt may be (`limit`, named by `limit_name`)."""

    limit_name = "max_length"
    read_reserve = 0  # tokens a backend generates to read a position (vLLM generates the one it reads)
    top_k: Optional[int] = None  # how many log-probabilities a position shows; None: every token asked for

    @property
    def limit(self) -> int:
        return self.config.max_length

    # -- the two primitives ------------------------------------------------------------------------------------
    def next_token(self, prompts: Sequence[Segments], read_ids: Sequence[int]) -> list[tuple[dict, Optional[str]]]:
        """For each prompt (token segments; prompts that start with the same segments may share their encoding),
        the log-probabilities of the next token, {token id: logprob} (at least `read_ids`, or the backend's top
        `top_k`), and the token the backend generated there (None when it generates none to read)."""
        raise NotImplementedError

    def greedy(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[list[int]]:
        """The token ids greedy decoding adds to each prompt, at most `max_new_tokens` of them."""
        raise NotImplementedError

    # -- prompts -----------------------------------------------------------------------------------------------
    def use_tokenizer(self, tokenizer) -> None:
        """Judge with `tokenizer` from now on; what depends on it (the label and score tokens, the prompt
        layout, the tokenised segments) is redone only when it changes."""
        if tokenizer is getattr(self, "tokenizer", None):
            return
        self.tokenizer = tokenizer
        self.layout = ChatLayout(tokenizer)
        self.label_ids = label_token_ids(tokenizer)
        self._tok_cache: OrderedDict[str, list[int]] = OrderedDict()
        self._score_tokens: Optional[ScoreTokens] = None

    def _tokens(self, text: str) -> list[int]:
        """Segment-wise tokenisation with a small LRU: prefixes, bodies and tails repeat across queries."""
        ids = self._tok_cache.get(text)
        if ids is None:
            ids = self._tok_cache[text] = self.tokenizer(text, add_special_tokens=False).input_ids
            if len(self._tok_cache) > 4096:
                self._tok_cache.popitem(last=False)
        else:
            self._tok_cache.move_to_end(text)
        return ids

    def segments(self, q: Query | ScoreQuery) -> Segments:
        """The judge prompt of one query as token segments (prompting.py's prefix, body and tail, each
        tokenised on its own), identical for every local backend."""
        if isinstance(q, ScoreQuery):
            seg = self.layout.score_segments(q.prefix_user, q.response)
        else:
            seg = self.layout.segments(q.prefix_user, q.first, q.second, q.principle_text, cot=self.config.cot.enabled)
        return self._tokens(seg.prefix), self._tokens(seg.body), self._tokens(seg.tail)

    def encode(self, q: Query | ScoreQuery) -> list[int]:
        """The judge prompt of one query as token ids."""
        return [t for seg in self.segments(q) for t in seg]

    def _shared(self, segments: Segments) -> Segments:
        """The segments a backend may share between prompts: all of them, or with `share_prefix: false` (the
        unshared reference path) the query's prompt as one piece."""
        return segments if getattr(self.config, "share_prefix", True) else ([t for s in segments for t in s],)

    def _prepare(self, queries: Sequence, reserve: int, failed: type) -> tuple[list, list[tuple[int, Segments]]]:
        """The verdicts known before the model runs (a prompt that cannot be built, or one with no room for the
        `reserve` tokens its verdict needs), and the queries left to run with their segments."""
        out: list = [None] * len(queries)
        todo = []
        for i, q in enumerate(queries):
            try:
                segments = self.segments(q)
            except Exception as e:  # a query that cannot be rendered fails alone
                out[i] = failed(None, error=f"could not build the judge prompt: {type(e).__name__}: {e}")
                continue
            n = sum(map(len, segments))
            if n + reserve > self.limit:
                v = too_long(n, self.limit, self.limit_name)
                if reserve:
                    v.error += f" (less the {reserve} token(s) the verdict needs)"
                out[i] = failed(None, error=v.error, prompt_tokens=n)
                continue
            todo.append((i, segments))
        return out, todo

    # -- pairwise ----------------------------------------------------------------------------------------------
    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        if self.config.cot.enabled:
            return self._judge_cot(queries)
        out, todo = self._prepare(queries, self.read_reserve, Verdict)
        reads = self.next_token([self._shared(s) for _, s in todo], self.label_ids[0] + self.label_ids[1])
        for (i, segments), (top, generated) in zip(todo, reads):
            n = sum(map(len, segments))
            out[i] = verdict_from_logprobs(top, self.label_ids, generated, self.top_k, n, self.read_reserve)
        return out

    def _judge_cot(self, queries: Sequence[Query]) -> list[Verdict]:
        """A rationale per query (greedy), then the label read after prompt + rationale + COT_ANSWER_CUE."""
        cue = self._tokens(COT_ANSWER_CUE)
        reserve = max(8, len(cue) + 2)  # room after the rationale for the cue and the label
        out, todo = self._prepare(queries, reserve, Verdict)
        prompts = [[t for s in segments for t in s] for _, segments in todo]
        budget = [max(1, min(self.config.cot.max_new_tokens, self.limit - len(ids) - reserve)) for ids in prompts]
        second = []
        for (i, _), ids, new in zip(todo, prompts, self.greedy(prompts, budget)):
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            rationale = text.split("Final answer")[0].rstrip()  # a rationale that wrote its own answer is cut there
            scored = ids + self.tokenizer(rationale, add_special_tokens=False).input_ids + cue
            if len(scored) + self.read_reserve > self.limit:  # a rationale that re-tokenises longer than generated
                out[i] = too_long(len(scored), self.limit, self.limit_name)
                out[i].raw, out[i].rationale, out[i].completion_tokens = text, rationale, len(new)
                continue
            second.append((i, scored, text, rationale, len(new), len(ids)))
        reads = self.next_token([(scored,) for _, scored, *_ in second], self.label_ids[0] + self.label_ids[1])
        for (i, _, text, rationale, n_new, n), (top, generated) in zip(second, reads):
            completion = n_new + self.read_reserve
            out[i] = verdict_from_logprobs(top, self.label_ids, generated, self.top_k, n, completion, text, rationale)
        return out

    # -- score -------------------------------------------------------------------------------------------------
    def score_tokens(self) -> ScoreTokens:
        """The score pieces of this tokenizer and scale (scanned once per tokenizer and scale)."""
        scale = self.config.score
        if self._score_tokens is None or self._score_tokens.texts != [str(v) for v in scale.values]:
            self._score_tokens = ScoreTokens(self.tokenizer, scale.values, self.layout.score_cue)
        return self._score_tokens

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreVerdict]:
        """Each query read at the rating cue and after each score prefix ("1" before "0"); the reads of one query
        share its prompt."""
        tokens = self.score_tokens()
        extra = list(tokens.prefix_ids.items())
        longest = max((len(ids) for _, ids in extra), default=0)
        out, todo = self._prepare(queries, self.read_reserve + longest, ScoreVerdict)
        prompts, at = [], []
        for i, segments in todo:
            shared = self._shared(segments)
            prompts += [shared] + [(*shared, ids) for _, ids in extra]
            at += [(i, "")] + [(i, text) for text, _ in extra]
        rows: dict[int, dict[str, list[float]]] = {}
        errors: dict[int, str] = {}
        for (i, text), (top, _) in zip(at, self.next_token(prompts, tokens.read_ids)):
            try:
                rows.setdefault(i, {})[text] = [_logprob(top, tid) for tid in tokens.read_ids]
            except InvalidLogprob as e:
                errors[i] = f"the engine returned an {e}"
        for i, segments in todo:
            n = sum(map(len, segments))
            if i in errors:
                out[i] = ScoreVerdict(None, error=errors[i], prompt_tokens=n)
                continue
            probs, mass, error = normalised(value_masses(tokens.texts, tokens.reads_from(rows[i])))
            if error and mass == 0.0 and self.top_k is not None:
                error += f" (none among the top {self.top_k} log-probabilities)"
            out[i] = ScoreVerdict(probs, error=error, mass=mass, source="logprobs", prompt_tokens=n)
        return out
