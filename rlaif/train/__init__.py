"""Components of the training recipes (rlaif/recipes/): typed configs (`config`, no heavy imports), losses, model
builders, preference batches, checkpoints and metrics. Import the submodules you need; this package imports
nothing itself, so `import rlaif` never pulls in torch.
"""
