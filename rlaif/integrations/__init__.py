"""rlaif inside other training engines: what their own trainers need so that rlaif's labels keep their meaning there
(`trl`: TRL trainers that train on the soft label `p_chosen`). A sibling of rlaif/recipes/ above rlaif/train/,
whose losses it reuses; each module imports its engine itself, so this package imports nothing heavy.
"""
