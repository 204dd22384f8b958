"""Fuzz tests (hypothesis): generated inputs through the command line, in-process."""
