"""Running a job's work on a Ray cluster (`--ray`): connecting (connect.py) and a pool of workers, each a Ray actor
holding one loaded model, fed a bounded number of batches at a time (pool.py). The jobs bring their own worker
classes (rlaif/labeling/ray.py, rlaif/revision/ray.py, rlaif/policy/ray.py); Ray itself is imported only here,
and only when a job asks for it.
"""
