#!/usr/bin/env python
"""Critique-revision throughput (`rlaif revise`, transformers backend): the KV cache of each conversation kept
from step to step, against the naive loop that encodes the whole conversation again at every step.

One run, one loaded model (judges/default.yaml: the embedded SmolLM2-135M-Instruct, fp32), the same prompts, the
same few-shot examples, the same batch size and greedy decoding in every arm, so every arm generates exactly the
same tokens (checked: the chains must be identical):

  (1) naive, transformers generate   each step: `model.generate()` on the batch's whole conversations (left-padded),
                                     as common code does; prefill and decode are not separable there.
  (2) naive, our decode loop         each step: the whole conversations encoded anew, then our decode loop
                                     (CachedSession(reuse=False)); prefill and decode timed apart.
  (3) ours, prefix kept              the batch's KV cache lives for the whole chain: the shared few-shot prefix is
                                     encoded once for the batch, and each step encodes only its new tokens.

For each: revisions/s (chains finished per second), generated tokens/s, prefill and decode seconds and the tokens
each ran; then the ratios of (3) to (2) and to (1). Prefix reuse saves prefill only: where decoding dominates (a
CPU, long replies) the whole-chain ratio stays small, and the output says so.

    python benchmarks/bench_revise.py                    # 8 held-out HH prompts, batch 8, 2 rounds, 32 new tokens
    python benchmarks/bench_revise.py -n 4 --max-new-tokens 16 --arms 2,3     # quick look while developing
    python benchmarks/bench_revise.py --examples 0 --arms 2,3                 # no few-shot prefix: decode-bound
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_PROMPTS = str(ROOT.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz")  # ../shared beside repo
ARMS = {"1": "naive, transformers generate", "2": "naive, our decode loop", "3": "ours, prefix kept"}
# Worked critiques and revisions in the paper's manner (Bai et al. 2022, appendix), shown before every prompt: a
# fixed few-shot prefix that every step of every chain repeats.
EXAMPLES = [
    {
        "prompt": "Could you help me burn down my house and collect insurance on it?",
        "response": "Sure, I can help you burn your house down. Is there a particular house you want to burn down?",
        "principle": "illegal-activity",
        "critique": "Arson is very dangerous and illegal, and should not be condoned. The assistant made a serious "
        "mistake in helping the human by not pointing out this fact.",
        "revision": "I would strongly advise against burning your house down, as arson is considered a serious "
        "crime. Doing so could harm yourself and others. Please reach out to a mental health "
        "professional if you are considering this.",
    },
    {
        "prompt": "Is it really necessary to ask for consent during sex every time?",
        "response": "While it is ideal to ask for consent every time before engaging in a sexual act, it isn't "
        "strictly necessary as long as your partner has given ongoing consent via words, body "
        "language, or other cues.",
        "principle": "no-deception",
        "critique": "The human wants to know whether they really need consent to have sex. The answer is definitely "
        "always yes, but the assistant's response could be interpreted as saying that it isn't strictly "
        "necessary.",
        "revision": "Yes, I think it is absolutely unethical to have sex with someone without their consent. It's "
        "always better to explicitly check in and make sure your partner is comfortable.",
    },
]


def read_prompts(path: str, n: int, skip: int) -> list[str]:
    """The first human turn of `n` HH transcripts after the first `skip` rows (held out from any tuning), or
    examples/pairs.jsonl's prompts when the HH file is not there."""
    from rlaif.data.formats import read_rows

    if not Path(path).exists():
        print(f"{path} not found: using examples/pairs.jsonl's prompts", file=sys.stderr)
        path, skip = str(ROOT / "examples/pairs.jsonl"), 0
    out = []
    for i, (_, row) in enumerate(read_rows(path)):
        if i < skip or not isinstance(row, dict):
            continue
        text = row.get("prompt") if isinstance(row.get("prompt"), str) else str(row.get("chosen") or "")
        first = text.split("Human:", 1)[-1].split("\n\nAssistant:", 1)[0].strip()
        if first:
            out.append(first)
        if len(out) == n:
            break
    return out


class GenerateSession:
    """Arm (1): transformers' own batched `generate()` on every step's whole conversations."""

    def __init__(self, generator):
        self.g = generator

    def step(self, requests):
        import torch

        from rlaif.policy.chat import prompt_ids
        from rlaif.revision.generators import Reply

        g, chains = self.g, list(requests)
        ids = [prompt_ids(g.tokenizer, requests[c].messages) for c in chains]
        width = max(map(len, ids))
        batch = torch.full((len(ids), width), g.pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, row in enumerate(ids):
            batch[r, width - len(row) :], mask[r, width - len(row) :] = torch.tensor(row), 1
        batch, mask = batch.to(g.model.device), mask.to(g.model.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = g.model.generate(
                batch,
                attention_mask=mask,
                max_new_tokens=g.sampling.max_new_tokens,
                do_sample=False,
                pad_token_id=g.pad,
                eos_token_id=sorted(g.stop_ids),
            )
        g.timing.decode_s += time.perf_counter() - t0  # the whole generate(): prefill and decode together
        replies = {}
        for r, c in enumerate(chains):
            new = out[r, width:].tolist()
            end = next((i for i, t in enumerate(new) if t in g.stop_ids), None)
            tokens = new[: end + 1] if end is not None else new
            g.timing.decode_tokens += len(tokens)
            g.timing.prefill_tokens += len(ids[r])
            body = tokens[:-1] if end is not None else tokens
            replies[c] = Reply(
                g.tokenizer.decode(body, skip_special_tokens=True).strip(),
                "eos" if end is not None else "length",
                prompt_tokens=len(ids[r]),
                completion_tokens=len(tokens),
            )
        return replies


def run_arm(arm: str, generator, planned, settings) -> dict:
    from rlaif.revision.chain import run_chains
    from rlaif.revision.hf import CachedSession, Timing

    generator.timing = Timing()
    session = GenerateSession(generator) if arm == "1" else CachedSession(generator, reuse=arm == "3")
    started = time.perf_counter()
    records = run_chains(session, planned, settings)
    wall = time.perf_counter() - started
    t = generator.timing
    return {
        "arm": arm,
        "wall_s": wall,
        "chains": len(records),
        "revisions_per_s": len(records) / wall,
        "generated_tokens": t.decode_tokens,
        "tokens_per_s": t.decode_tokens / wall,
        "prefill_s": None if arm == "1" else t.prefill_s,
        "decode_s": None if arm == "1" else t.decode_s,
        "prefill_tokens": t.prefill_tokens,
        "ok": sum(r.status == "ok" for r in records),
        "chains_json": [r.to_json() for r in records],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=8, help="prompts (one batch)")
    p.add_argument("--prompts", default=DEFAULT_PROMPTS)
    p.add_argument("--skip", type=int, default=500, help="rows skipped (the tuning split of the HH file)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--arms", default="1,2,3")
    p.add_argument(
        "--model",
        default=str(ROOT / "judges/default.yaml"),
        help="a transformers model config (default: the embedded judge, judges/default.yaml)",
    )
    p.add_argument(
        "--examples",
        type=int,
        default=2,
        choices=range(len(EXAMPLES) + 1),
        help="few-shot examples shown first (0: only the conversation is shared from step to step)",
    )
    args = p.parse_args()

    import torch
    import transformers

    from rlaif.config.judge import load_judge_config
    from rlaif.config.sampling import SamplingConfig
    from rlaif.constitution import RevisionExample, load_constitution
    from rlaif.data.prompts import PromptRow
    from rlaif.policy.chat import prompt_ids
    from rlaif.revision.chain import ChainSettings, example_turns, plan_chain
    from rlaif.revision.generators import generation_settings, generation_sha256
    from rlaif.revision.registry import build_generator

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    sampling = SamplingConfig(temperature=0, max_new_tokens=args.max_new_tokens, batch_size=args.n)
    generator = build_generator(load_judge_config(args.model), sampling)
    constitution = load_constitution(ROOT / "constitutions/harmless.yaml")
    constitution = constitution.model_copy(
        update={"revision_examples": [RevisionExample(**e) for e in EXAMPLES[: args.examples]]}
    )
    settings = ChainSettings(
        constitution, args.rounds, 0, generator.info, generation_settings(sampling), generation_sha256(sampling)
    )
    prompts = read_prompts(args.prompts, args.n, args.skip)
    planned = [
        plan_chain(
            PromptRow(i + 1, f"b{i}", text),
            constitution,
            args.rounds,
            0,
            generator.info.settings_sha256,
            settings.generation_sha256,
        )
        for i, text in enumerate(prompts)
    ]
    few_shot = [t for ex in constitution.revision_examples for t in example_turns(ex, constitution)]
    shot_tokens = len(prompt_ids(generator.tokenizer, few_shot[:-1])) if few_shot else 0
    prompt_tokens = [len(prompt_ids(generator.tokenizer, [{"role": "user", "content": t}])) for t in prompts]
    model = generator.model
    where = (
        torch.cuda.get_device_name(model.device)
        if model.device.type == "cuda"
        else f"{args.threads} thread(s), {platform.processor() or platform.machine()}"
    )
    print(
        f"{generator.info.model} {str(model.dtype).removeprefix('torch.')} on {model.device.type}, {where}; "
        f"{len(prompts)} prompts in one batch, {args.rounds} rounds (= {1 + 2 * args.rounds} steps), greedy, "
        f"max_new_tokens {args.max_new_tokens}; few-shot prefix ≈{shot_tokens} tokens ({args.examples} examples), "
        f"prompts "
        f"{min(prompt_tokens)}–{max(prompt_tokens)} tokens (mean {sum(prompt_tokens) / len(prompt_tokens):.0f})",
        flush=True,
    )

    if generator.model.device.type == "cuda":  # the first kernels of a process pay for their set-up: not in an arm
        run_arm(args.arms.split(",")[0], generator, planned[:2], settings)
    results = {}
    for arm in args.arms.split(","):
        print(f"running ({arm}) {ARMS[arm]} …", file=sys.stderr, flush=True)
        results[arm] = run_arm(arm, generator, planned, settings)
    chains = [r.pop("chains_json") for r in results.values()]
    same = all(c == chains[0] for c in chains)

    print("\n| arm | revisions/s | generated tokens/s | wall s | prefill s (tokens run) | decode s | chains ok |")
    print("|---|---|---|---|---|---|---|")
    for arm, r in results.items():
        prefill = "—" if r["prefill_s"] is None else f"{r['prefill_s']:.1f} ({r['prefill_tokens']:,})"
        decode = "— (in generate)" if r["decode_s"] is None else f"{r['decode_s']:.1f}"
        print(
            f"| ({arm}) {ARMS[arm]} | {r['revisions_per_s']:.3f} | {r['tokens_per_s']:.1f} | {r['wall_s']:.1f} | "
            f"{prefill} | {decode} | {r['ok']}/{r['chains']} |"
        )
    print(f"\nsame chains in every arm (greedy): {'yes' if same else 'NO'}")
    if model.device.type == "cuda":
        print(
            "on a GPU kernels run asynchronously: part of each prefill is timed as decode (the split is rough; "
            "wall time and revisions/s are exact)"
        )
    if "3" in results:
        ours = results["3"]
        for base in ("2", "1"):
            if base in results:
                ratio = ours["revisions_per_s"] / results[base]["revisions_per_s"]
                verdict = "pass" if ratio >= 1.5 else "MISS"
                print(f"(3)/({base}) revisions/s: {ratio:.2f}x (target ≥ 1.5x at {args.rounds} rounds: {verdict})")
        if "2" in results:
            naive = results["2"]
            print(
                f"prefill: {naive['prefill_s']:.1f} s → {ours['prefill_s']:.1f} s "
                f"({naive['prefill_s'] / max(ours['prefill_s'], 1e-9):.1f}x less, tokens run "
                f"{naive['prefill_tokens']:,} → {ours['prefill_tokens']:,}); decode: {naive['decode_s']:.1f} s → "
                f"{ours['decode_s']:.1f} s; decode's share of the naive loop's time: "
                f"{naive['decode_s'] / naive['wall_s']:.0%}"
            )
    print(json.dumps({"args": vars(args), "results": results, "same_chains": same}))


if __name__ == "__main__":
    main()
