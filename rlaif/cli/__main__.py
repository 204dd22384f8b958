"""`python -m rlaif.cli`: the command line (the accelerate launch command in the README runs it this way)."""

from . import main

main()
