"""The miniature LIMR loop: a synthetic task family, a tiny Qwen2 policy, GRPO on the CPU (see mini/run.py)."""
