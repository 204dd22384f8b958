"""Judges: given a query — which of two responses, shown in one order, better satisfies one principle — a judge
returns P(first preferred). Here live the interface (base.py), the whole judge prompt (prompting.py), how a local
judge reads its verdicts (reading.py), one module per backend (hf.py with tree_attention.py, vllm.py, openai.py,
python.py, policy.py) and registry.py, which builds the judge a config names; labeling/ asks for both orders and
debiases the verdicts.
"""
