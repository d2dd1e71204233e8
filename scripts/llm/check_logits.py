#!/usr/bin/env python3
"""Checks a converted decoder's logits against the independent numpy forward pass.

    check_logits.py MODEL.gguf MODEL_DIR REFERENCES.json [--cases N] [--tolerance T]

For the first N conversations of the references file (their prompt tokens come
from llama.cpp's tokenizer), ONNX Runtime runs MODEL_DIR/model.onnx three ways
and each set of logits must be within T (absolute) of reference.py's, with the
same arg max:

1. the whole prompt in one call (prefill), empty cache;
2. then four single-token decode steps fed the reference's greedy tokens,
   through the key/value cache the previous call returned;
3. two prompts of different lengths in one batch, the shorter padded on the
   left (attention mask 0, positions counted from its first real token).

Exits 1 with the case, step and largest difference on the first mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
from reference import Reference  # noqa: E402


class Decoder:
    def __init__(self, directory: Path):
        self.config = json.loads((directory / "kokon-llm.json").read_text())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def empty(self, batch: int) -> dict:
        c = self.config
        zero = np.zeros((batch, c["kv_heads"], 0, c["head_dim"]), np.float32)
        return {f"past_key_values.{i}.{n}": zero for i in range(c["layers"]) for n in ("key", "value")}

    def run(self, ids: np.ndarray, positions: np.ndarray, mask: np.ndarray, past: dict):
        out = self.session.run(None, {"input_ids": ids, "position_ids": positions, "attention_mask": mask, **past})
        present = {n.replace("present.", "past_key_values."): v for n, v in zip(self.outputs[1:], out[1:])}
        return out[0], present


def compare(what: str, found: np.ndarray, expected: np.ndarray, tolerance: float) -> float:
    diff = float(np.abs(found - expected).max())
    if diff > tolerance or int(np.argmax(found)) != int(np.argmax(expected)):
        print(f"check_logits: {what}: largest difference {diff:.3g} (tolerance {tolerance}), "
              f"arg max {int(np.argmax(found))} (expected {int(np.argmax(expected))})", file=sys.stderr)
        sys.exit(1)
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("references", type=Path)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args()
    cases = json.loads(args.references.read_text())["cases"][: args.cases]
    reference = Reference(args.gguf)
    decoder = Decoder(args.model_dir)
    worst = 0.0
    prompts = [case["prompt_tokens"] for case in cases]
    for n, prompt in enumerate(prompts):
        cache = reference.new_cache()
        expected = reference.prompt(prompt, cache)
        length = len(prompt)
        logits, past = decoder.run(np.array([prompt]), np.arange(length)[None], np.ones((1, length), np.int64),
                                   decoder.empty(1))
        worst = max(worst, compare(f"case {n} prefill", logits[0], expected, args.tolerance))
        for step in range(4):
            token = int(np.argmax(expected))
            position = length + step
            expected = reference.step(token, position, cache)
            logits, past = decoder.run(np.array([[token]]), np.array([[position]]),
                                       np.ones((1, position + 1), np.int64), past)
            worst = max(worst, compare(f"case {n} decode step {step}", logits[0], expected, args.tolerance))
    # A batch of two, the shorter prompt padded on the left.
    a, b = prompts[0], prompts[1][:-5]
    width = max(len(a), len(b))
    ids = np.array([[0] * (width - len(p)) + p for p in (a, b)])
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in (a, b)])
    positions = np.array([[0] * (width - len(p)) + list(range(len(p))) for p in (a, b)])
    logits, _ = decoder.run(ids, positions, mask, decoder.empty(2))
    for row, prompt in enumerate((a, b)):
        expected = reference.prompt(prompt, reference.new_cache())
        worst = max(worst, compare(f"padded batch row {row}", logits[row], expected, args.tolerance))
    print(f"check_logits: {len(prompts)} prompts, prefill, 4 decode steps each and a padded batch agree "
          f"(largest difference {worst:.3g}, tolerance {args.tolerance})")


if __name__ == "__main__":
    main()
