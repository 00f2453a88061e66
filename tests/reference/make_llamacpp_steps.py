"""Teacher-forced reference for every step: llama.cpp's logits on x86-64 after each
generated token of every shared oracle row (the prompt, then the oracle's generated ids
fed back one after another), as the ten best ids with their logits and the top-two margin.

The parity test holds Charter to these at every step, not only the first: its argmax must
be llama.cpp's wherever this margin is not small, and its logits for these ids must be
close. Where Charter and the shared oracle disagree, this file says whether x86-64
llama.cpp sides with the oracle (the other machine's rounding) or with Charter.

    python3 -m venv /tmp/ll && /tmp/ll/bin/pip install llama-cpp-python==0.3.36 numpy
    /tmp/ll/bin/python tests/reference/make_llamacpp_steps.py > tests/reference/llamacpp_x86_steps.jsonl

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
            prompt, generated = row["prompt_ids"], row["generated_ids"]
            llm.reset()
            # The whole teacher-forced sequence in one batch; the logits after position
            # len(prompt) - 1 + i predict generated[i].
            llm.eval(prompt + generated[:-1])
            steps = []
            for i in range(len(generated)):
                logits = np.array(llm.scores[len(prompt) - 1 + i])
                top = np.argsort(-logits, kind="stable")[:10]
                steps.append({
                    "top10": [[int(t), round(float(logits[t]), 5)] for t in top],
                    "margin": round(float(logits[top[0]] - logits[top[1]]), 5),
                })
            print(json.dumps({"id": row["id"], "steps": steps}))
            sys.stdout.flush()
