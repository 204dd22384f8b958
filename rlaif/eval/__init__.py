"""Evaluation of a policy by a judge: `winrate.py` measures its win rate against a baseline, each comparison judged
in both orders under a constitution, with a bootstrap interval over prompts (`rlaif eval winrate`, and the
self-feedback loop after every iteration)."""

from __future__ import annotations

from .winrate import WinRate, evaluate_winrate, judge_winrate

__all__ = ["WinRate", "evaluate_winrate", "judge_winrate"]
