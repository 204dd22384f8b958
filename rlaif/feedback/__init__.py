"""Preferences on their way from labels to training, whoever gave them.

`sources.py` reads the configured feedback source (`ai`, `human` or `mixed`: the judge where it is sure, people for
the rest) as label records; `export.py` writes label records or a source as TRL preference rows (`rlaif export`);
`select.py` picks the pairs where a human label is worth most (`rlaif annotate select`); `human_records.py` builds
a person's label as a label record; `calibration/` compares the judge with people and corrects its p_a.
"""
