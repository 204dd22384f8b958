"""What a model engine is, below the judges, the reviser and the sampler: loading.py finds and loads model files
(the embedded GGUF converted once); http.py is the one OpenAI-compatible HTTP client, with keys.py its API key.
"""
