"""Score judges at work (`rlaif score`, d-RLAIF): every response of a prompt rated on its own by a judge in
`mode: score`, one record per response, in a durable job folder beside rlaif/labeling/'s. Pairwise preferences are
derived from two scores when they are read (rlaif/data/scores.py), so one folder feeds export, calibration and
training like a label folder.
"""
