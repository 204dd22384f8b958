"""Running a job's work on a Ray cluster (`--ray`): connecting (connect.py) and a pool of workers, each a Ray actor
holding one loaded model, fed a bounded number of batches at a time (pool.py). The label, revise and score jobs'
workers are one class, runner.ModelWorker, given the job's model loader and batch function; `rlaif generate` has
its own (rlaif/policy/ray.py). Ray itself is imported only here, and only when a job asks for it.
"""
