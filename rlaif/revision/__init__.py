"""Constitutional AI's supervised stage (Bai et al. 2022, sec. 3.1): a model answers a prompt, critiques its answer
against a principle drawn from the constitution and revises it, for several rounds; the final revisions are what
it is then fine-tuned on (`rlaif train sft`). A job over prompts beside rlaif/labeling/, which it does not import.

chain.py runs the chains (conversation, principles, records); registry.py builds the model that answers (the
generators.py interface) from a judge-style model config: hf.py keeps the KV cache of each conversation from round
to round, then openai.py, vllm.py, python.py; job.py runs the chains as a resumable, shardable job into a folder
(stats.py for its summary); export.py writes the revisions as SFT rows or as preference pairs.
"""
