"""`python -m rlaif.cli`: the command line (the accelerate launch command in docs/training.md runs it this way)."""

from . import main

main()
