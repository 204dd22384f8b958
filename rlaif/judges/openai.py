"""A judge behind any OpenAI-compatible endpoint (a vLLM server, a hosted API).

P(first preferred) is read from the logprobs of the label token when the server returns them, else parsed from
the reply text (replies.py reads both); what is sent, chat messages or the local backends' exact prompt, is the
config's `request:` (openai_requests.py). The HTTP client (rlaif/models/http.py) sends them, with its concurrency
over base URLs, retries, spending caps and key scrubbing; the key is scrubbed from what a record keeps here.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ..config.judge import OpenAIJudgeConfig
from ..models.http import HTTPBacked, HTTPClient, usage_tokens
from ..records import Query, ScoreQuery, ScoreVerdict, Verdict
from .base import BudgetExhausted, Judge, flag_repaired
from .openai_requests import RequestShape
from .prompting import LABELS
from .reading import InvalidLogprob
from .replies import FINAL, cue_position, label_probs, parse_text, read_score, split_rationale


class OpenAIJudge(HTTPBacked, Judge):
    config: OpenAIJudgeConfig

    def __init__(self, config: OpenAIJudgeConfig, tokenizer: Any = None):
        """`tokenizer`: the one that renders request: completions prompts, when the caller has it loaded already
        (default: loaded from the config's `tokenizer` or `model`)."""
        super().__init__(config)
        self._shape = RequestShape(config, tokenizer)
        self.client = HTTPClient(config, self._shape.path, "openai judge")

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        """One request per query; as `score`, a score query's reply is read as a distribution (_read_score)."""
        queries = list(queries)
        if not queries:
            return []
        bodies = [self._shape.score_body(q) if isinstance(q, ScoreQuery) else self._shape.body(q) for q in queries]
        results, stopped = self.client.post(bodies, self._shape.reply)
        verdicts = [None if r is None else self._verdict(q, *r) for q, r in zip(queries, results)]
        if stopped:  # the unanswered are None: left for a resumed run, never a placeholder
            raise BudgetExhausted(stopped, verdicts)
        return verdicts

    score = judge

    def _verdict(self, q: Query | ScoreQuery, data: Optional[dict], error: Optional[str], attempts: int):
        scoring = isinstance(q, ScoreQuery)
        if error is not None:
            return (ScoreVerdict if scoring else Verdict)(None, error=error, extra={"attempts": attempts})
        verdict = self._read_score(data) if scoring else self._read(data)
        verdict.extra["attempts"] = attempts
        return verdict

    def _read_score(self, data: dict) -> ScoreVerdict:
        """A score query's reply: the distribution from logprobs, else the score the text names (replies.py)."""
        reply = self._shape.reply(data)
        verdict = read_score(reply.text, reply.positions, self.config.score.values)
        verdict.raw = self.client.scrub(reply.text)
        flag_repaired(verdict, reply.repaired)
        verdict.prompt_tokens, verdict.completion_tokens = usage_tokens(data)
        return verdict

    def _read(self, data: dict) -> Verdict:
        """Turn one response into a verdict: logprobs first, the reply text otherwise."""
        reply = self._shape.reply(data)
        text, content = reply.text, reply.positions
        rationale = None
        answer = text
        if self.config.cot.enabled:
            rationale, answer = split_rationale(text)
            position = cue_position(content) if content else None
        else:
            position = content[0] if content else None
        prompt_tokens, completion_tokens = usage_tokens(data)
        verdict = Verdict(
            None,
            raw=self.client.scrub(text),
            rationale=self.client.scrub(rationale),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        flag_repaired(verdict, reply.repaired)
        try:
            probs = label_probs(position) if position is not None else None
        except InvalidLogprob as e:  # a broken server: its text verdict is no more trusted than its numbers
            verdict.error = f"the server returned an {e}"
            return verdict
        if probs is not None:
            verdict.p_first = probs[0] / (probs[0] + probs[1])
            verdict.label_mass = probs[0] + probs[1]
            verdict.extra["verdict_source"] = "logprobs"
            return verdict
        cut = reply.finish_reason == "length"
        # A CoT reply cut before its final answer ends mid-reasoning: its last line is no verdict.
        label = None if self.config.cot.enabled and cut and not FINAL.search(text) else parse_text(answer)
        if label is not None:
            verdict.p_first = 1.0 if label == LABELS[0] else 0.0
            verdict.extra["verdict_source"] = "text"
        elif cut and self.config.cot.enabled:
            verdict.error = "could not read a verdict: the reply was cut at max_new_tokens before its final answer"
        else:
            verdict.error = "could not read a verdict: the reply names neither A nor B, or both"
        return verdict
