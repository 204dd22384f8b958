"""The whole judge prompt, in one place: labeling hands over a pair and its principles, and gets back the queries
with their text; each backend renders those through its model's chat template (or as chat messages).

A score judge (mode: score) asks about one response at a time, in the same three segments: the prefix (instructions,
the rating question and scale, the conversation) is shared by every response to a prompt, the body is
"Response: …", and the tail only ends the turn with the cue "Rating:".

A judge prompt is three segments, in this order, designed so work can be shared between the queries of one pair:
  prefix  — standing instructions, few-shot examples and the conversation (`pair_queries` renders it): identical
            for both orders and every principle of a pair, so a backend encodes it once;
  body    — "Response A … Response B …": differs only between the two orders;
  tail    — the principle's question, the end of the user turn and the answer cue: short, one per principle.
Backends that see raw text (transformers, vLLM) render the segments through the model's chat template; the
HTTP backend sends the same words as chat messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..constitution import Constitution, Principle
from ..records import Message, Pair, Prompt, Query, ScoreQuery

DEFAULT_INSTRUCTIONS = (
    "You are a careful evaluator. You will see a conversation between a user and an AI assistant, then two "
    "candidate responses for the assistant's next turn, labelled A and B. Judge them only by the question you "
    "are asked, not by their order or their length."
)
ANSWER_REQUEST = "Reply with a single letter: A or B."
COT_REQUEST = (
    "First explain your reasoning in a few sentences. Then finish with a line of the form "
    "'Final answer: Response A' or 'Final answer: Response B'."
)
ANSWER_PREFILL = "Better response:"
COT_ANSWER_CUE = "\nFinal answer: Response"
LABELS = ("A", "B")

SCORE_INSTRUCTIONS = (
    "You are a careful evaluator. You will see a conversation between a user and an AI assistant, then one "
    "candidate response for the assistant's next turn. Rate it only by the question you are asked, not by its "
    "length."
)
# A principle without `score_text` is a comparison ("Which response is less harmful?"): it becomes a rating of one
# response by this template. An inverted principle ("Which is more harmful?") rates the worse quality, and its
# reward is negated.
SCORE_FROM_COMPARISON = (
    "{text} Judge this one response by that question: rate how fully it has the quality the question asks about."
)
SCORE_REQUEST = "Rate the response from {low} (worst) to {high} (best). Reply with a single number."
SCORE_PREFILL = "Rating:"

_BODY = "\u27e6BODY\u27e7"
_TAIL = "\u27e6TAIL\u27e7"


def render_conversation(prompt: Prompt) -> str:
    """A conversation as plain text; chat messages become 'User: …' / 'Assistant: …' turns."""
    if isinstance(prompt, str):
        return prompt.strip()
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n\n".join(
        f"{names.get(m.get('role', ''), m.get('role', '').title())}: {m.get('content', '')}" for m in prompt
    )


def render_body(first: str, second: str) -> str:
    return f"Response A:\n{first.strip()}\n\nResponse B:\n{second.strip()}\n\n"


def render_question(principle_text: str, cot: bool) -> str:
    return f"Question: {principle_text.strip()}\n{COT_REQUEST if cot else ANSWER_REQUEST}"


def render_prefix_user(
    prompt: Prompt,
    instructions: Optional[str],
    few_shot: Sequence[Any] = (),
    principle_texts: Optional[dict[str, str]] = None,
) -> str:
    """The user-turn text before the responses: instructions, worked examples, then the conversation."""
    parts = [(instructions or DEFAULT_INSTRUCTIONS).strip()]
    for i, ex in enumerate(few_shot, 1):
        ptext = (principle_texts or {}).get(ex.principle) if ex.principle else None
        ptext = ptext or next(iter((principle_texts or {}).values()), "Which response is better?")
        parts.append(
            f"Example {i}.\nConversation:\n{render_conversation(ex.prompt)}\n\n"
            f"{render_body(ex.response_a, ex.response_b)}Question: {ptext}\n"
            f"Answer: {ex.preferred.upper()}"
        )
    parts.append(f"Conversation:\n{render_conversation(prompt)}\n\n")
    return "\n\n".join(parts[:-1]) + ("\n\n" if len(parts) > 1 else "") + parts[-1]


def pair_queries(
    pair: Pair, principles: Sequence[Principle], constitution: Constitution, instructions: Optional[str] = None
) -> list[Query]:
    """The judge queries of one pair: for each principle, (a, b) then (b, a), all with one prefix rendered from the
    standing instructions (`instructions`, a judge config's override, else the constitution's, else the built-in
    preamble), the constitution's worked examples and the pair's conversation."""
    prefix = render_prefix_user(
        pair.prompt,
        instructions or constitution.instructions,
        constitution.few_shot,
        {p.id: p.text for p in constitution.principles},
    )
    orders = ((pair.response_a, pair.response_b), (pair.response_b, pair.response_a))
    return [Query(pair.prompt, first, second, p.id, p.text, prefix) for p in principles for first, second in orders]


def score_question(principle: Principle) -> str:
    """The rating question of a principle: its `score_text`, else its comparison text by SCORE_FROM_COMPARISON."""
    return principle.score_text or SCORE_FROM_COMPARISON.format(text=principle.text.strip())


def score_queries(
    prompt: Prompt,
    responses: Sequence[str],
    principle: Principle,
    low: int,
    high: int,
    instructions: Optional[str] = None,
) -> list[ScoreQuery]:
    """The score queries of one prompt's responses under one principle, all with one prefix: the standing
    instructions (a judge config's `instructions`, else SCORE_INSTRUCTIONS; a constitution's instructions and
    worked examples are written for comparisons and are not shown), the rating question and scale, then the
    conversation. Everything but the response is in that prefix, so a backend encodes it once per prompt and
    each response costs its own tokens and the cue."""
    question = score_question(principle)
    head = (instructions or SCORE_INSTRUCTIONS).strip()
    prefix = render_prefix_user(prompt, f"{head}\n\n{render_score_request(question, low, high)}")
    return [ScoreQuery(prompt, r, principle.id, question, prefix) for r in responses]


def render_score_body(response: str) -> str:
    return f"Response:\n{response.strip()}"


def render_score_request(question: str, low: int, high: int) -> str:
    return f"Question: {question.strip()}\n{SCORE_REQUEST.format(low=low, high=high)}"


@dataclass(frozen=True)
class Segments:
    prefix: str
    body: str
    tail: str

    @property
    def text(self) -> str:
        return self.prefix + self.body + self.tail


class ChatLayout:
    """Renders segments through a tokenizer's chat template (or a plain fallback when it has none)."""

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer
        self._frame = self._find_frame()

    def _find_frame(self) -> tuple[str, str, str]:
        """Render the template once around markers; return (before user text, between, after user text)."""
        user = f"PREFIX{_BODY}{_TAIL}"
        template = getattr(self.tokenizer, "chat_template", None) if self.tokenizer is not None else None
        if template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = f"User: {user}\n\nAssistant:"
        head, rest = text.split("PREFIX", 1)
        _, rest = rest.split(_BODY, 1)
        _, after = rest.split(_TAIL, 1)
        return head, "", after

    def segments(self, prefix_user: str, first: str, second: str, principle_text: str, cot: bool) -> Segments:
        head, _, after = self._frame
        tail = render_question(principle_text, cot) + after
        if not cot:
            tail += ANSWER_PREFILL
        return Segments(prefix=head + prefix_user, body=render_body(first, second), tail=tail)

    def score_segments(self, prefix_user: str, response: str) -> Segments:
        """A score query's segments: the prefix (instructions, rating question, conversation), the response, and
        the cue "Rating:" (with a space, for a tokenizer that writes the space before a number as a token of its
        own)."""
        head, _, after = self._frame
        return Segments(prefix=head + prefix_user, body=render_score_body(response), tail=after + self.score_cue)

    @property
    def score_cue(self) -> str:
        if not hasattr(self, "_score_cue"):
            tok, self._score_cue = self.tokenizer, SCORE_PREFILL
            if tok is not None:
                ids = tok(" 7", add_special_tokens=False).input_ids
                if len(ids) == 2 and not tok.decode(ids[:1]).strip():
                    self._score_cue += " "
        return self._score_cue


def score_messages(prefix_user: str, response: str) -> list[Message]:
    """A score query as chat messages, for HTTP backends that apply the template server-side."""
    return [{"role": "user", "content": prefix_user + render_score_body(response)}]


def chat_messages(prefix_user: str, first: str, second: str, principle_text: str, cot: bool) -> list[Message]:
    """The same prompt as chat messages, for HTTP backends that apply the template server-side."""
    return [
        {"role": "user", "content": prefix_user + render_body(first, second) + render_question(principle_text, cot)}
    ]


def label_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Every vocabulary token that reads as the label 'A' (or 'B') once whitespace is stripped — 'A', ' A',
    '\\nA' … — so probability mass split across tokenisations is summed, not lost."""
    vocab_size = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])
    ids: tuple[list[int], list[int]] = ([], [])
    for i, t in enumerate(texts):
        s = t.strip()
        if s == LABELS[0]:
            ids[0].append(i)
        elif s == LABELS[1]:
            ids[1].append(i)
    if not ids[0] or not ids[1]:
        raise ValueError("the judge's tokenizer has no single token for the labels 'A' and 'B'")
    return ids
