"""The loop's feedback step (step 2 of an iteration of rlaif/recipes/loop.py): from the iteration's samples
(OUT/iter-K/pairs.jsonl) to the preferences its DPO steps train on.

A pairwise judge labels every pair of a prompt's samples in both orders through the labelling job
(OUT/iter-K/labels/). A score judge (`mode: score`, d-RLAIF, Lee et al. 2023, sec. 2.3) rates each sample once
through the score job (OUT/iter-K/scores/: n calls for n samples, against n(n-1) for the pairwise round robin),
and each prompt's rated samples are binarised into pairs as `rlaif export --pairs-from` does (UltraFeedback's
rule; OUT/iter-K/preferences.jsonl, p_a = σ((s_chosen − s_rejected)/T), with `judge.mode: score`, the constitution
hash and both scores kept). Both jobs are durable, so a killed iteration resumes its labelling; the feedback source
then picks what trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..config.feedback import HumanFeedback
from ..config.loop import LoopConfig
from ..config.run import PairsConfig
from ..data.labels import read_labels, read_scores
from ..data.scores import binarized_labels
from ..feedback.sources import invalid_input, load_feedback, queue_row
from ..files import write_jsonl
from ..judges.base import ScoreJudge
from ..labeling.job import label
from ..policy.sampling import derived_seed
from ..scoring.job import score
from ..train.data import FeedbackData, read_feedback
from .loop_people import CARRIED_LABELS, HUMAN_LABELS, QUEUE, People

LABELS = Path("labels") / "labels.jsonl"  # a pairwise judge's label folder's records
PREFERENCES = Path("preferences.jsonl")  # a score judge's binarised pairs


@dataclass
class Labelled:
    """What the step hands the loop: the preferences that train, the iteration's row fields about its labels,
    and their account for the log line (main process only; empty on the others)."""

    feedback: FeedbackData
    fields: dict
    phrase: str = ""


def fmt(x, spec=".3f") -> str:
    """A figure of the log line (n/a when there is none)."""
    return "n/a" if x is None else format(x, spec)


def label_pairs(run, k: int, it_dir: Path, rows: list) -> tuple[dict, str]:
    """A pairwise judge: the labelling job over every pair (resumed after a kill)."""

    job = label(
        it_dir / "pairs.jsonl",
        run.constitution,
        run.judges[0],
        it_dir / "labels",
        seed=run.config.seed,
        skip_invalid=True,
        progress=False,
    )
    stats = job.stats
    fields = {
        "pairs": len(rows),
        "labels_ok": stats["ok"],
        "labels_tie": stats["labels"]["tie"],
        "labels_failed": stats["failed"],
        "position_consistency": stats["position_consistency"],
    }
    return fields, (
        f"{len(rows)} pairs labelled (ok {stats['ok']}, tie {stats['labels']['tie']}, failed "
        f"{stats['failed']}; position consistency {fmt(stats['position_consistency'])})"
    )


def rate_samples(run, k: int, it_dir: Path, rows: list) -> tuple[dict, str]:
    """A score judge: the score job rates each sample once (resumed after a kill), then each prompt's samples are
    binarised by feedback.pairs_from (`rlaif.data.scores.binarize`, as `rlaif export --pairs-from`)."""

    config, judge = run.config, run.judges[0]
    fb = config.feedback.root  # source ai: the only one a score judge takes (judge_mode_problems)
    # a sample too long for the judge is a failed rating, left out of the pairs (as the pairwise step does)
    job = score(
        it_dir / "pairs.jsonl",
        run.constitution,
        judge,
        it_dir / "scores",
        seed=config.seed,
        progress=False,
        skip_invalid=True,
    )
    stats = job.stats  # the scale, T and tie margin the folder's labels are derived with (scale_of)
    labels = list(
        binarized_labels(
            read_scores(it_dir / "scores"),
            fb.pairs_from,
            tuple(stats["scale"]),
            stats["temperature"],
            stats["tie_margin"],
            seed=derived_seed(config.seed, "pairs_from", k),
            min_margin=fb.min_margin,
        )
    )
    write_jsonl(labels, it_dir / PREFERENCES)  # a function of the scores: written again on resume, the same
    ties = sum(r["label"] == "tie" for r in labels)
    # labels_failed counts the judge's failed verdicts in either mode: here the ratings that failed (each leaves
    # its sample out of every pair), so the field means "the judge failed on this many" whatever the judge
    fields = {
        "judge_mode": "score",
        "samples": stats["responses"],
        "ratings_ok": stats["ok"],
        "ratings_failed": stats["failed"],
        "pairs_from": fb.pairs_from,
        "pairs": len(labels),
        "labels_ok": len(labels),
        "labels_tie": ties,
        "labels_failed": stats["failed"],
    }
    return fields, (
        f"{stats['responses']} samples of {stats['prompts']} prompts rated (ok {stats['ok']}, failed "
        f"{stats['failed']}; mean score {fmt(stats['mean_score'], '.2f')}), "
        f"{len(labels)} pairs {fb.pairs_from} ({ties} ties)"
    )


def feedback_step(run, k: int, first: int, it_dir: Path, rows: list, people: Optional[People] = None) -> Labelled:
    """The judge's verdicts on the iteration's samples (main process), with people inside the loop their answers
    (loop_people.py), then the preferences that train (every process reads them): the one place the loop follows
    the kind of judge."""
    score_judge = run.judge_kind is ScoreJudge
    fields, phrase, labels = {}, "", it_dir / (PREFERENCES if score_judge else LABELS)
    if run.main:
        for j in run.judges:
            if hasattr(j, "attach"):  # backend: policy judges with the current weights
                j.attach(run.model, run.tokenizer, name=f"policy@step-{first}")
        with run.acc.autocast():
            fields, phrase = (rate_samples if score_judge else label_pairs)(run, k, it_dir, rows)
        if people is not None:
            for _ in load_feedback(iteration_source(run.config, it_dir, labels)):
                pass  # routed once through, for the queue people are shown
            fields["people"] = people.take(k, it_dir, {r["id"] for r in rows}, resumed=run.step > first)
        feedback = iteration_feedback(run.config, it_dir, k, labels=labels)
    run.acc.wait_for_everyone()
    if not run.main:
        feedback = iteration_feedback(run.config, it_dir, k, write=False, labels=labels)
    return Labelled(feedback, fields, phrase)


def iteration_source(config: LoopConfig, it_dir: Path, labels: Path):
    """The loop's feedback source given this iteration's paths (ai or mixed: its labels and its queue)."""
    fb, paths = config.feedback.root, {"ai": str(labels), "queue": str(it_dir / QUEUE)}
    return fb.model_copy(update={name: path for name, path in paths.items() if name in type(fb).model_fields})


def iteration_feedback(
    config: LoopConfig, it_dir: Path, k: int, write: bool = True, labels: Optional[Path] = None
) -> FeedbackData:
    """The iteration's training preferences from its labels (`labels`, the pairwise label folder's by default):
    the loop's feedback source given this iteration's paths, read by `rlaif.feedback` (ai / human / mixed), and with
    people inside the loop the answers the iteration took (loop_people.py): to its own pairs through the mixed
    source, late ones to earlier pairs beside it. `write`: write the queue for people and the iteration's human
    labels (the main process; the others read)."""

    fb, labels = config.feedback.root, labels or it_dir / LABELS
    queue, also = it_dir / QUEUE, None
    if isinstance(fb, HumanFeedback):  # people label every pair; their labels of this iteration's pairs (by id) train
        mine = it_dir / HUMAN_LABELS
        if write:
            records = [r for r in read_labels(labels) if not invalid_input(r)]
            write_jsonl((queue_row(r) for r in records), queue)
            ids = {r["id"] for r in records}
            people = read_labels(fb.human) if Path(fb.human).exists() else ()
            write_jsonl((r for r in people if r.get("id") in ids), mine)
        source = fb.model_copy(update={"human": str(mine)})
    else:  # the judge's labels of this iteration, and (mixed) its queue for people
        source = iteration_source(config, it_dir, labels)
        if getattr(fb, "annotate", None) is not None:
            source = source.model_copy(update={"human": str(it_dir / HUMAN_LABELS)})
            if (it_dir / CARRIED_LABELS).exists() and (it_dir / CARRIED_LABELS).stat().st_size:
                late = HumanFeedback(source="human", human=str(it_dir / CARRIED_LABELS), human_combine=fb.human_combine)
                also = ("carried", late)
    pairs = PairsConfig(soft=config.soft, min_margin=config.min_margin, eval_fraction=0.0)
    try:
        return read_feedback(source, pairs, config.seed, write_queue=write, also=also)
    except ValueError as e:
        if fb.source == "ai":
            hint = (
                " (every label a tie? min_margin: 0 trains on the soft p_a of all of them)" if "tie" in str(e) else ""
            )
            raise ValueError(f"iteration {k}: {e}{hint}") from None
        if also is not None or getattr(fb, "annotate", None) is not None:
            raise ValueError(
                f"iteration {k}: {e}. Nothing to train on yet: the pairs in {queue} wait for people's answers "
                "(feedback.annotate); run the same command again to wait for them again"
            ) from None
        raise ValueError(
            f"iteration {k}: {e}. People's labels are needed for the pairs in {queue} (e.g. `rlaif "
            f"annotate serve --pairs {queue}`, exported into {fb.human}); then run the same command "
            "again to continue"
        ) from None
