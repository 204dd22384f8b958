"""Input data: files of pairs and prompts (formats.py: which file; pairs.py: which row shape; prompts.py: prompts
for sampling) and the label files a job writes (labels.py: the one reader, the one atomic writer, the store)."""
