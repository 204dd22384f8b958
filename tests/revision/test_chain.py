"""The critique-revision chain (Bai et al. 2022, sec. 3.1): principles drawn as seeded among those with both
requests; on a tiny random Llama (tier 2) the record fields and rounds, and the KV cache kept across rounds giving
exactly what transformers' own generate gives on each whole conversation; with a python reviser, the conversation
the model sees (examples first, each request in order) and a failed step that ends its chain."""

from __future__ import annotations

import pytest
import torch
import yaml

from rlaif.config.judge import PythonJudgeConfig, TransformersJudgeConfig
from rlaif.config.sampling import SamplingConfig
from rlaif.constitution import Constitution
from rlaif.data.prompts import PromptRow
from rlaif.policy.chat import prompt_ids
from rlaif.revision.chain import ChainSettings, plan_chain, run_chains
from rlaif.revision.generators import Reply, Session, generation_settings, generation_sha256
from rlaif.revision.job import revise
from rlaif.revision.registry import build_generator
from tests.revision import revisers
from tests.revision.files import CONSTITUTION, EXAMPLE, prompt_rows, revise_files, revised


def constitution(text: str = CONSTITUTION) -> Constitution:
    return Constitution.model_validate(yaml.safe_load(text))


def test_principles_are_drawn_among_those_with_both_requests_as_seeded():
    c = constitution()
    draws = [c.revision_principle(f"p{i}", k, seed=0).id for i in range(1500) for k in range(2)]
    assert set(draws) == {"polite", "kind"}  # never the principle without critique and revision requests
    assert draws.count("kind") / len(draws) == pytest.approx(0.75, abs=0.03)  # weight 3 against 1
    again = [c.revision_principle(f"p{i}", k, seed=0).id for i in range(1500) for k in range(2)]
    other_seed = [c.revision_principle(f"p{i}", k, seed=1).id for i in range(1500) for k in range(2)]
    assert again == draws and other_seed != draws
    rounds = [[c.revision_principle(f"p{i}", k, 0).id for k in range(2)] for i in range(200)]
    assert any(a != b for a, b in rounds)  # each round draws anew (with replacement)


def test_the_examples_stay_out_of_the_hash_while_empty_and_name_a_revisable_principle():
    c = constitution()
    with_examples = constitution(CONSTITUTION + EXAMPLE)
    assert with_examples.sha256 != c.sha256
    assert constitution(CONSTITUTION + "revision_examples: []\n").sha256 == c.sha256
    with pytest.raises(ValueError, match="'judge-only' is not a principle with both critique and revision"):
        constitution(CONSTITUTION + EXAMPLE.replace("principle: kind", "principle: judge-only"))


def _settings(c: Constitution, generator, sampling: SamplingConfig, rounds: int = 2, seed: int = 0):
    return ChainSettings(c, rounds, seed, generator.info, generation_settings(sampling), generation_sha256(sampling))


def _planned(c: Constitution, rows: list[PromptRow], settings: ChainSettings):
    return [
        plan_chain(r, c, settings.rounds, settings.seed, settings.model.settings_sha256, settings.generation_sha256)
        for r in rows
    ]


ROWS = [
    PromptRow(1, "a", "How do I bake bread?"),
    PromptRow(2, "b", [{"role": "user", "content": "Why is the sky blue?"}]),
    PromptRow(3, "c", "Fix my car", response="Buy a new one."),
]


class _PlainGenerate(Session):
    """The reference: transformers' own greedy `generate` on each step's whole conversation, one at a time."""

    def step(self, requests):
        g, out = self.generator, {}
        for chain, request in requests.items():
            ids = prompt_ids(g.tokenizer, request.messages)
            row = g.model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=g.sampling.max_new_tokens,
                do_sample=False,
                pad_token_id=g.pad,
                eos_token_id=sorted(g.stop_ids),
            )[0, len(ids) :].tolist()
            stopped = bool(row) and row[-1] in g.stop_ids
            body = row[:-1] if stopped else row
            out[chain] = Reply(
                g.tokenizer.decode(body, skip_special_tokens=True).strip(),
                "eos" if stopped else "length",
                prompt_tokens=len(ids),
                completion_tokens=len(row),
            )
        return out


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "rows",
    [ROWS, [ROWS[0], PromptRow(2, "b", ROWS[1].prompt, "Look it up."), ROWS[2]]],
    ids=["two-start-one-joins", "one-starts-two-join"],
)
def test_the_kept_kv_cache_gives_what_plain_generate_gives(tiny_model_dir, rows):
    """Examples shared by every prompt, chains that join at their first critique (an input response), and two
    rounds: the cached batch, the naive loop (every step encoded anew) and transformers' generate on each whole
    conversation give the same chains; the cache encodes far fewer tokens than the naive loop."""
    c = constitution(CONSTITUTION + EXAMPLE)
    sampling = SamplingConfig(temperature=0, max_new_tokens=10)
    results, encoded = {}, {}
    for mode in ("cached", "naive", "plain"):
        config = TransformersJudgeConfig(model=str(tiny_model_dir), share_prefix=mode != "naive")
        g = build_generator(config, sampling)
        settings = _settings(c, g, sampling)
        session = _PlainGenerate(g) if mode == "plain" else g.session()
        records = run_chains(session, _planned(c, rows, settings), settings)
        results[mode] = [
            (r.initial, r.initial_finish, [x.model_dump() for x in r.rounds], r.final, r.status) for r in records
        ]
        encoded[mode] = g.timing.prefill_tokens
    assert results["cached"] == results["plain"] == results["naive"]
    assert all(status == "ok" for *_, status in results["cached"])
    assert encoded["cached"] < encoded["naive"] / 2, encoded


@pytest.mark.usefixtures("one_thread")
def test_the_chain_on_a_tiny_random_model(tmp_path, tiny_model_dir):
    rows = [
        {"id": "a", "prompt": "How do I bake bread?"},
        {"id": "b", "prompt": [{"role": "user", "content": "Why is the sky blue?"}]},
        {"id": "c", "prompt": "Fix my car", "response": "Buy a new one."},
    ]
    files = revise_files(tmp_path, rows, model=f"backend: transformers\nmodel: {tiny_model_dir}\n")
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=8, batch_size=2)
    result = revise(
        files["prompts"],
        files["constitution"],
        files["model"],
        files["out"],
        rounds=3,
        seed=5,
        sampling=sampling,
        progress=False,
    )
    records = revised(files["out"])
    c = constitution()
    assert sorted(records) == ["a", "b", "c"] and result.revised_now == 3
    for pid, r in records.items():
        assert r["status"] == "ok" and "error" not in r
        assert [x["principle_id"] for x in r["rounds"]] == [c.revision_principle(pid, k, 5).id for k in range(3)]
        assert r["final"] == r["rounds"][-1]["revision"]
        assert all(
            x["critique_finish"] in ("eos", "length") and x["revision_finish"] in ("eos", "length") for x in r["rounds"]
        )
        assert r["constitution_sha256"] == c.sha256 and r["seed"] == 5 and r["source"] == "ai"
        assert r["model"] == {
            "backend": "transformers",
            "model": str(tiny_model_dir),
            "settings_sha256": TransformersJudgeConfig(model=str(tiny_model_dir)).settings_sha256(),
        }
        assert r["generation"] == {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 8}
        assert r["generation_sha256"] == generation_sha256(sampling) and len(r["key"]) == 32
        assert r["completion_tokens"] >= 6 and r["prompt_tokens"] > 0
    assert records["c"]["initial"] == "Buy a new one." and records["c"]["initial_source"] == "input"
    assert "initial_finish" not in records["c"]
    assert records["a"]["initial_source"] == "model" and records["a"]["initial_finish"] in ("eos", "length")
    assert records["b"]["prompt"] == [{"role": "user", "content": "Why is the sky blue?"}]
    # the same seed draws the same text whatever the batch: one prompt per batch gives the same records
    again = revise(
        files["prompts"],
        files["constitution"],
        files["model"],
        tmp_path / "again",
        rounds=3,
        seed=5,
        sampling=sampling.model_copy(update={"batch_size": 1}),
        progress=False,
    )
    assert again.revised_now == 3 and revised(tmp_path / "again") == records


def test_the_reviser_sees_the_examples_first_then_each_request_in_order(tmp_path):
    revisers.RECORDED.clear()
    files = revise_files(
        tmp_path,
        [{"id": "q", "prompt": "move my couch"}],
        "tests.revision.revisers:recording",
        constitution=CONSTITUTION + EXAMPLE,
    )
    revise(files["prompts"], files["constitution"], files["model"], files["out"], rounds=2, progress=False)
    c = constitution(CONSTITUTION + EXAMPLE)
    example = [
        {"role": "user", "content": "Can you help me move?"},
        {"role": "assistant", "content": "No."},
        {"role": "user", "content": "Say whether the answer is kind."},
        {"role": "assistant", "content": "The answer is curt."},
        {"role": "user", "content": "Rewrite the answer kindly."},
        {"role": "assistant", "content": "I am sorry, I cannot help you move this time."},
    ]
    asked = revisers.RECORDED
    assert [(a["step"], a["principle"]) for a in asked] == [
        ("initial", None),
        *((s, c.revision_principle("q", k, 0).id) for k in range(2) for s in ("critique", "revision")),
    ]
    assert asked[0]["messages"] == example + [{"role": "user", "content": "move my couch"}]
    for i, a in enumerate(asked[1:]):  # each conversation is the previous one, its reply, and the next request
        p = c.principle(a["principle"])
        before, reply = (
            asked[i]["messages"],
            revisers.polite(asked[i]["messages"], asked[i]["step"], asked[i]["principle"]),
        )
        assert a["messages"] == before + [
            {"role": "assistant", "content": reply},
            {"role": "user", "content": getattr(p, a["step"])},
        ]
    (record,) = revised(files["out"]).values()
    assert record["final"] == "answer to: move my couch please"  # the reviser's visible effect


def test_a_failed_step_ends_its_chain_and_passes_nothing_on(tmp_path):
    rows = [{"id": "ok", "prompt": "fine"}, {"id": "bad", "prompt": "boom"}]
    files = revise_files(tmp_path, rows, "tests.revision.revisers:broken")
    result = revise(files["prompts"], files["constitution"], files["model"], files["out"], progress=False)
    records = revised(files["out"])
    assert records["ok"]["status"] == "ok" and records["ok"]["final"].endswith("please")
    bad = records["bad"]
    assert bad["status"] == "failed" and bad["final"] is None and bad["rounds"] == []
    assert bad["error"] == "round 1 critique: RuntimeError: the reviser cannot critique this"
    assert bad["initial"] == "answer to: boom"
    assert result.stats["failed"] == 1 and result.stats["failure_reasons"] == {bad["error"]: 1}
    # an empty reply is no revision either
    (tmp_path / "e").mkdir()
    files = revise_files(tmp_path / "e", rows[:1], "tests.revision.revisers:empty_revision")
    revise(files["prompts"], files["constitution"], files["model"], files["out"], progress=False)
    (empty,) = revised(files["out"]).values()
    assert empty["status"] == "failed" and empty["error"] == "round 1 revision: the reply was empty"
    assert empty["final"] is None and empty["rounds"] == []


def test_python_backend_and_policy_backend_are_built_from_judge_configs():
    g = build_generator(PythonJudgeConfig(function="tests.revision.revisers:polite"), SamplingConfig())
    assert g.info.backend == "python" and g.info.model == "tests.revision.revisers:polite"
    from rlaif.config.judge import PolicyJudgeConfig

    with pytest.raises(ValueError, match="backend: policy has no model of its own"):
        build_generator(PolicyJudgeConfig(), SamplingConfig())
    with pytest.raises(ValueError, match="reviser function 'tests.revision.revisers:nope' cannot be imported"):
        build_generator(PythonJudgeConfig(function="tests.revision.revisers:nope"), SamplingConfig())


def test_prompt_rows_read_ids_lines_and_a_starting_response(tmp_path):
    from rlaif.data.prompts import read_prompt_rows
    from tests.labeling.jobfiles import write_rows

    path = write_rows(
        tmp_path / "p.jsonl",
        [*prompt_rows(2), {"prompt": "x", "response": "y"}, {"prompt": "q", "response_a": "a", "response_b": "b"}],
    )
    rows = list(read_prompt_rows(path))
    assert [(r.line, r.id, r.response) for r in rows[:2]] == [(1, "q0", None), (2, "q1", None)]
    assert rows[2].response == "y" and len(rows[2].id) == 16 and rows[3].response is None
