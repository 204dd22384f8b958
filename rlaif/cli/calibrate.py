"""`rlaif calibrate` (how far the judge agrees with people), `rlaif calibrate fit` and `rlaif calibrate apply` (a
monotone map from the judge's p_a to people's preference, and labels passed through it); `rlaif calibrate fit
--method jury` (the weights of a jury of judges, for a `backend: jury` judge).

LABELS arguments take a labels JSONL file or a directory holding labels.jsonl. Human labels are records with
`source: "human"` (`rlaif human import`, `rlaif annotate export`); AI label files of data with a known human
choice (records carrying `human_label`, e.g. `rlaif label` on HH-RLHF) are accepted as human labels too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import fail, guard, print_table

app = typer.Typer(
    help="Compare the AI judge with human labels; fit and apply a calibration map.", invoke_without_command=True
)

_AI_HELP = "AI labels: a labels JSONL file or a label directory."
_HUMAN_HELP = (
    'Human labels (source "human"), or AI labels carrying a known human_label (e.g. labels of '
    "HH-RLHF data): a labels JSONL file or a label directory."
)


@app.callback()
def calibrate_cmd(
    ctx: typer.Context,
    ai: Optional[Path] = typer.Option(None, help=_AI_HELP),
    human: Optional[Path] = typer.Option(None, help=_HUMAN_HELP),
    out_dir: Optional[Path] = typer.Option(
        None, "--out", help="Report directory: report.json, reliability.png, report.html."
    ),
    bins: int = typer.Option(10, min=2, max=1000, help="Equal-width p_a bins for ECE and the diagram."),
    resamples: int = typer.Option(1000, min=0, help="Bootstrap resamples (0: no intervals)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    tie_margin: float = typer.Option(
        0.05, help="Tie margin for per-principle labels read from per_principle p_a (sampling: all)."
    ),
) -> None:
    """Report how far the judge agrees with people: rlaif calibrate --ai LABELS --human LABELS --out DIR."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [n for n, v in (("--ai", ai), ("--human", human), ("--out", out_dir)) if v is None]
    if missing:
        fail(f"error: missing {', '.join(missing)} (see rlaif calibrate --help)")

    def run():
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..feedback.calibration.report import run_report

        return run_report(ai, human, out_dir, bins=bins, n_boot=resamples, seed=seed, tie_margin=tie_margin)

    report = guard(run)
    # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
    from ..feedback.calibration.report import resolution_warning, summary_rows

    print_table(
        f"judge vs people, {report['n_pairs']} pairs (report in {out_dir})",
        summary_rows(report),
        header=("figure", "value", "95% interval", "n"),
    )
    if (warning := resolution_warning(report)) is not None:
        print(warning)


@app.command("fit")
def calibrate_fit(
    ai: List[Path] = typer.Option(
        ..., help=_AI_HELP + " With --method jury, one --ai per member (a label run of each judge)."
    ),
    human: Path = typer.Option(..., help=_HUMAN_HELP),
    out: Path = typer.Option(
        ..., "--out", help="The map, as JSON (MAP.json); with --method jury a directory: weights.json, report.json."
    ),
    method: str = typer.Option(
        "isotonic", help="isotonic, platt or temperature (a map of one judge's p_a), or jury (weights of several)."
    ),
    holdout: float = typer.Option(
        0.5, help="Share of pairs held out (by a seeded hash of the id) to measure the map on; 0 fits on all."
    ),
    seed: int = typer.Option(0, help="Seed of the held-out split (and of the jury's bootstrap)."),
    tie_margin: float = typer.Option(
        0.05, help="Calibrated labels are 'tie' when |p_a - 0.5| <= this (used by apply, and for agreement after)."
    ),
    symmetric: bool = typer.Option(
        True, help="Also fit on each pair swapped, so the map treats response a and b alike (a jury: no intercept)."
    ),
    bins: int = typer.Option(10, min=2, max=1000, help="Bins for ECE."),
    resamples: int = typer.Option(
        1000, min=0, help="--method jury: bootstrap resamples for the weights' and the held-out figures' intervals."
    ),
    l2: float = typer.Option(
        1.0,
        help="--method jury: the penalty l2·|w|² on the log-likelihood summed over pairs (prior variance 1/(2·l2)).",
    ),
) -> None:
    """Fit a monotone map from the judge's p_a to P(people prefer response_a), or a jury's weights (--method jury,
    one --ai per member), and report held-out figures."""
    if method == "jury":
        return _fit_jury(ai, human, out, holdout, seed, tie_margin, symmetric, bins, resamples, l2)
    if len(ai) != 1:
        fail(f"error: --method {method} maps one judge's labels: give one --ai (several are for --method jury)")

    def run():
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..feedback.calibration.maps import fit_map_file

        return fit_map_file(
            ai[0],
            human,
            out,
            method=method,
            holdout=holdout,
            seed=seed,
            tie_margin=tie_margin,
            symmetric=symmetric,
            bins=bins,
        )

    cmap = guard(run)
    # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
    from ..feedback.calibration.report import fit_rows

    print_table(
        f"{cmap['method']} map written to {out} (sha256 {cmap['sha256'][:12]})",
        fit_rows(cmap),
        header=("figure", "before", "after", "pairs"),
    )
    if "score_temperature" in cmap["fit"]:
        t = cmap["fit"]["score_temperature"]
        print(
            f"score judge: fitted T = {t:.4g}; set `score: {{temperature: {t:.4g}}}` in the judge config and run "
            f"the same rlaif score command again (nothing is rated anew; derived preferences then use it)"
            if t is not None
            else "score judge: its score gaps do not predict the human choice (T = infinity)"
        )


def _fit_jury(ai, human, out, holdout, seed, tie_margin, symmetric, bins, resamples, l2) -> None:
    """`rlaif calibrate fit --method jury`: the weights with their intervals, the members and the jury side by side
    on the held-out pairs, and the line naming the members with no signal."""

    def run():
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..feedback.calibration.jury import fit_jury_files

        return fit_jury_files(
            ai,
            human,
            out,
            holdout=holdout,
            seed=seed,
            symmetric=symmetric,
            l2=l2,
            n_boot=resamples,
            tie_margin=tie_margin,
            bins=bins,
        )

    doc = guard(run)
    # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
    from ..feedback.calibration.report import JURY_COLUMNS, jury_figure_rows, jury_weight_rows, no_signal_line

    print_table(
        f"jury of {len(doc['members'])} fitted on {doc['n_pairs']} pairs: {out}/weights.json "
        f"(sha256 {doc['sha256'][:12]})",
        jury_weight_rows(doc),
        header=("member", "weight", "95% interval", "judge hash"),
    )
    part = "heldout" if "heldout" in doc["evaluation"] else "fit"
    title = "held-out pairs" if part == "heldout" else "the fit pairs (no held-out split: --holdout 0)"
    print_table(
        f"members and jury on {doc['evaluation'][part]['n']} {title}, labels with tie margin {tie_margin}",
        jury_figure_rows(doc, part),
        header=("judge", *(h for _, h in JURY_COLUMNS), "decided"),
    )
    print(no_signal_line(doc))


@app.command("apply")
def calibrate_apply(
    map_file: Path = typer.Option(..., "--map", help="A map from `rlaif calibrate fit`."),
    labels: Path = typer.Option(..., help="AI labels to calibrate: a labels JSONL file or a label directory."),
    out_dir: Path = typer.Option(
        ..., "--out", help="Output directory: labels.jsonl (raw p_a kept as p_a_raw) and calibration.json."
    ),
) -> None:
    """Write calibrated labels: p_a through the map, the raw value in p_a_raw, the map's hash recorded."""

    def run():
        # lazy: numpy and the command's own modules, only when it runs: rlaif --help stays fast
        from ..feedback.calibration.maps import apply_map

        return apply_map(map_file, labels, out_dir)

    print(json.dumps(guard(run)))
