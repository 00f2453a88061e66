"""Second reference for the parity test: llama.cpp's first-step logits, computed on an
x86-64 machine, for the ids of `first_top10` in the shared oracle rows.

The shared oracle was produced on another machine; across machines llama.cpp's own
first-step logits for Gemma 3 move by up to 1.2 (gemma_09), because the kernels sum in
another order. This file pins what llama.cpp computes with the same settings on x86-64,
so the parity test can also hold Charter to a tight bound.

    python3 -m venv /tmp/ll && /tmp/ll/bin/pip install llama-cpp-python==0.3.36 numpy
    /tmp/ll/bin/python tests/reference/make_llamacpp_reference.py > tests/reference/llamacpp_x86_first_logits.jsonl

Settings as in tests/oracle/README.md: 2 threads, n_ctx 2048, n_batch 512, f16 KV cache,
flash attention on, CPU only.
"""

import json
import os
import sys

import numpy as np
from llama_cpp import Llama

MODELS = os.environ.get("CHARTER_MODELS_DIR", os.path.expanduser("~/.cache/charter/models"))
HERE = os.path.dirname(os.path.abspath(__file__))

for file, oracle in [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "generate_smollm2.jsonl"),
    ("gemma-3-270m-q4_k_m.gguf", "generate_gemma3.jsonl"),
]:
    llm = Llama(os.path.join(MODELS, file), n_ctx=2048, n_threads=2, n_batch=512,
                logits_all=True, flash_attn=True, verbose=False)
    with open(os.path.join(HERE, "..", "oracle", oracle)) as rows:
        for line in rows:
            row = json.loads(line)
            llm.reset()
            llm.eval(row["prompt_ids"])
            logits = np.array(llm.scores[len(row["prompt_ids"]) - 1])
            out = [[tok, round(float(logits[tok]), 5)] for tok, _ in row["first_top10"]]
            print(json.dumps({"id": row["id"], "first_top10": out}))
            sys.stdout.flush()
