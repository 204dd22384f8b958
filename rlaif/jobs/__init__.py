"""The one job engine every job over an input file runs on: its folder (lock, identity, manifest, caps), its
store (one record per id), the pass that plans, skips what is done, works batches (here or on Ray) and writes,
and the merge of a sharded job's folders."""
