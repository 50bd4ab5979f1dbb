"""limr: the pure core of the LIMR reproduction (reward, grader, data contracts, LIM selection helpers).

Nothing here imports torch, ray or vllm, so every module imports on a CPU machine.
"""
