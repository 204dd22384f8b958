"""Running a job's work on a Ray cluster (`--ray`): connecting (connect.py) and a pool of workers, each a Ray actor
holding one loaded model, fed a bounded number of batches at a time (pool.py). Every job's workers are one class,
rlaif.jobs.ray.ModelWorker, given the job's model loader and batch function. Ray itself is imported only here, and
only when a job asks for it.
"""
