"""Labelling: pairs in, label records out. pairwise.py judges pairs in both orders under the constitution's principles
and debiases the verdicts (preference.py holds the arithmetic); job.py runs that as a resumable job over a file into
a label folder (folder.py: its lock, the job it belongs to, what it spent), with stats.py for its summary and
shards.py to merge a sharded job.
"""
