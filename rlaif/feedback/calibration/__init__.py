"""The judge against people (`rlaif calibrate`), in the order the work runs: `match.py` pairs AI labels with human
labels by pair id; `metrics.py` computes agreement, kappa, ECE, length bias and the rest with bootstrap intervals;
`maps.py` fits, saves and applies a monotone map from the judge's p_a to people's preference; `jury.py` fits the
weights of a jury of judges; `report.py` writes report.json, the reliability diagram and report.html, and the rows
the commands print.
"""
