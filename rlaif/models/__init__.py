"""What a model engine is, below the judges, the reviser and the sampler: loading.py finds and loads model files
(the embedded GGUF converted once); vllm.py opens and closes the one vLLM engine and gives its two primitives (the
next token's log-probabilities, greedy generation); http.py is the one OpenAI-compatible HTTP client, with keys.py
its API key.
"""
