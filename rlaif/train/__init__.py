"""Components of the training recipes (rlaif/recipes/): the run (accelerator, run directory, optimiser, per-step
tail, final save), preference data and batches, losses, models, the shared preference and DPO steps, rollout
batches, PPO's maths, checkpoints and metrics. Configs live in rlaif/config/. Import the submodules you need; this
package imports nothing itself, so `import rlaif` never pulls in torch.
"""
