"""Native llama.cpp (through llama-cpp-python) on a speed-test plan, for `cargo xtask bench`.

Times what `charter_core::bench` times, the same way and on the same token ids: one
untimed pass, fresh prefills of each length (from an empty cache), greedy decoding after
the shortest, and a second turn read after its context. Prints one JSON object:
`engine`, `load_seconds`, `result` (as `charter bench --json`), `peak_rss_bytes`.

    python native.py MODEL.gguf PLAN.json THREADS

A benchmark dependency, never a test one: the bench installs llama-cpp-python into its
own virtual environment when it is missing.
"""

import json
import resource
import sys
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama

path, plan_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
plan = json.load(open(plan_path))
with open(path, "rb") as f:
    while f.read(1 << 24):
        pass  # into the page cache: a load from storage, not from a cold disk

started = time.perf_counter()
llm = Llama(path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, n_batch=512,
            flash_attn=True, verbose=False)
load_seconds = time.perf_counter() - started


def fresh(ids):
    llm.reset()
    llm.eval(ids)


def argmax():
    # Without logits_all, llama-cpp-python keeps no scores: read the context's logits of
    # the last token evaluated.
    return int(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).argmax())


shortest = min(plan["prefill"])
fresh(plan["prompt"][:shortest])
prefill = []
for n in plan["prefill"]:
    t = time.perf_counter()
    fresh(plan["prompt"][:n])
    prefill.append({"tokens": n, "seconds": time.perf_counter() - t})
fresh(plan["prompt"][:shortest])
t = time.perf_counter()
for _ in range(plan["decode"]):
    llm.eval([argmax()])
decode_seconds = time.perf_counter() - t
fresh(plan["context"])
t = time.perf_counter()
llm.eval(plan["turn"])
argmax()
turn_seconds = time.perf_counter() - t

print(json.dumps({
    "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__}, {threads} thread{'s' if threads > 1 else ''})",
    "load_seconds": load_seconds,
    "result": {
        "prefill": prefill,
        "decode_tokens": plan["decode"],
        "decode_seconds": decode_seconds,
        "turn_tokens": len(plan["turn"]),
        "turn_seconds": turn_seconds,
    },
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
