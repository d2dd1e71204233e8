#!/usr/bin/env python3
"""Measures converted decoders against each other: prefill and decode speed, memory.

    measure_formats.py DIR [DIR ...]

Each DIR holds a model.onnx from gguf_to_onnx.py (--weights f32 and
--weights blocks). Each is measured in its own process (so resident memory is its
own): a 64-token prompt, then 64 greedy decode steps with the key/value cache,
on ONNX Runtime's CPU execution provider. The figures in docs/llm.md come from
this script.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(directory: Path) -> dict:
    import numpy as np
    import onnxruntime as ort

    config = json.loads((directory / "kokon-llm.json").read_text())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    started = time.perf_counter()
    session = ort.InferenceSession(str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - started
    empty = np.zeros((1, config["kv_heads"], 0, config["head_dim"]), np.float32)
    past = {f"past_key_values.{i}.{n}": empty for i in range(config["layers"]) for n in ("key", "value")}
    prompt = np.arange(100, 164, dtype=np.int64)[None]

    def run(ids, start, past):
        total = start + ids.shape[1]
        feed = {"input_ids": ids, "position_ids": np.arange(start, total, dtype=np.int64)[None],
                "attention_mask": np.ones((1, total), np.int64), **past}
        out = session.run(None, feed)
        names = [o.name for o in session.get_outputs()]
        presents = {n.replace("present.", "past_key_values."): v for n, v in zip(names[1:], out[1:])}
        return out[0], presents

    run(prompt, 0, past)  # warm-up
    started = time.perf_counter()
    logits, cache = run(prompt, 0, past)
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for step in range(64):
        token = np.array([[int(np.argmax(logits[0]))]])
        logits, cache = run(token, prompt.shape[1] + step, cache)
    decode = (time.perf_counter() - started) / 64
    return {
        "model": str(directory),
        "file_mb": round((directory / "model.onnx").stat().st_size / 2**20, 1),
        "load_s": round(load, 2),
        "prefill_64_ms": round(prefill * 1000, 1),
        "decode_ms_per_token": round(decode * 1000, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(Path(sys.argv[2]))))
        return
    for directory in sys.argv[1:]:
        out = subprocess.run([sys.executable, __file__, "--one", directory], check=True, capture_output=True, text=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
