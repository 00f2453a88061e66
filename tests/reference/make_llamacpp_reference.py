"""Second reference for the parity test: llama.cpp run on an x86-64 machine, for every
row of the shared oracle.

The shared oracle was produced on another machine; across machines llama.cpp's own
first-step logits for Gemma 3 move by up to 1.2 (gemma_09), because the kernels sum in
another order. These files pin what llama.cpp computes with the same settings on x86-64,
so the parity test can also hold Charter to a tight bound.

* without arguments: the first-step logits after reading the prompt alone, for the ids
  of the oracle's `first_top10`;
* with `--steps`: teacher-forced, the prompt and the oracle's generated ids read in one
  batch, and for every step the ten best ids with their logits and the top-two margin.
  The parity test holds Charter to these at every step: where Charter and the shared
  oracle disagree, this file says whether x86-64 llama.cpp sides with the oracle (the
  other machine's rounding) or with Charter.

    python3 -m venv /tmp/ll && /tmp/ll/bin/pip install llama-cpp-python==0.3.36 numpy
    /tmp/ll/bin/python tests/reference/make_llamacpp_reference.py > tests/reference/llamacpp_x86_first_logits.jsonl
    /tmp/ll/bin/python tests/reference/make_llamacpp_reference.py --steps > tests/reference/llamacpp_x86_steps.jsonl

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
STEPS = "--steps" in sys.argv[1:]


def first_logits(llm, row):
    llm.reset()
    llm.eval(row["prompt_ids"])
    logits = np.array(llm.scores[len(row["prompt_ids"]) - 1])
    return {"id": row["id"], "first_top10": [[tok, round(float(logits[tok]), 5)] for tok, _ in row["first_top10"]]}


def every_step(llm, row):
    prompt, generated = row["prompt_ids"], row["generated_ids"]
    llm.reset()
    # The logits after position len(prompt) - 1 + i predict generated[i].
    llm.eval(prompt + generated[:-1])
    steps = []
    for i in range(len(generated)):
        logits = np.array(llm.scores[len(prompt) - 1 + i])
        top = np.argsort(-logits, kind="stable")[:10]
        steps.append({
            "top10": [[int(t), round(float(logits[t]), 5)] for t in top],
            "margin": round(float(logits[top[0]] - logits[top[1]]), 5),
        })
    return {"id": row["id"], "steps": steps}


for file, oracle in [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "generate_smollm2.jsonl"),
    ("gemma-3-270m-q4_k_m.gguf", "generate_gemma3.jsonl"),
]:
    llm = Llama(os.path.join(MODELS, file), n_ctx=2048, n_threads=2, n_batch=512,
                logits_all=True, flash_attn=True, verbose=False)
    with open(os.path.join(HERE, "..", "oracle", oracle)) as rows:
        for line in rows:
            row = json.loads(line)
            print(json.dumps(every_step(llm, row) if STEPS else first_logits(llm, row)))
            sys.stdout.flush()
