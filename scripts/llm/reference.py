#!/usr/bin/env python3
"""An independent forward pass of a llama-architecture GGUF model, in numpy (float64).

It shares no code with gguf_to_onnx.py: the weights are dequantized by the
`gguf` package's own `gguf.quants.dequantize`, attention is computed head by
head with the rotary embedding as complex rotations, and the key/value cache is
a list of arrays. It is what the ONNX decoder's logits are tested against
(check_logits.py) and what the committed greedy reference outputs come from
(make_references.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


class Reference:
    """A llama model from a GGUF file, evaluated one sequence at a time."""

    def __init__(self, path: Path):
        reader = GGUFReader(str(path))
        meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
        self.layers = int(meta["llama.block_count"])
        self.width = int(meta["llama.embedding_length"])
        self.heads = int(meta["llama.attention.head_count"])
        self.kv_heads = int(meta["llama.attention.head_count_kv"])
        self.head_dim = self.width // self.heads
        self.eps = float(meta["llama.attention.layer_norm_rms_epsilon"])
        self.base = float(meta["llama.rope.freq_base"])
        self.w = {}
        for t in reader.tensors:
            # dequantize gives the tensor in numpy order: [rows (ne1), row length (ne0)].
            self.w[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64)
        self.embedding = self.w["token_embd.weight"]
        self.head = self.w.get("output.weight", self.embedding)

    def norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x) + self.eps) * weight

    def rotate(self, v: np.ndarray, position: int) -> np.ndarray:
        """Rotates adjacent pairs of each head vector, as complex numbers."""
        d = self.head_dim
        freq = self.base ** (-np.arange(0, d, 2) / d)
        z = (v[..., 0::2] + 1j * v[..., 1::2]) * np.exp(1j * position * freq)
        out = np.empty_like(v)
        out[..., 0::2], out[..., 1::2] = z.real, z.imag
        return out

    def new_cache(self) -> list[tuple[list, list]]:
        return [([], []) for _ in range(self.layers)]

    def step(self, token: int, position: int, cache) -> np.ndarray:
        """Feeds one token at `position`; returns the next token's logits."""
        x = self.embedding[token].copy()
        group = self.heads // self.kv_heads
        for i in range(self.layers):
            w = lambda name: self.w[f"blk.{i}.{name}.weight"]  # noqa: E731
            h = self.norm(x, w("attn_norm"))
            q = (w("attn_q") @ h).reshape(self.heads, self.head_dim)
            k = (w("attn_k") @ h).reshape(self.kv_heads, self.head_dim)
            v = (w("attn_v") @ h).reshape(self.kv_heads, self.head_dim)
            keys, values = cache[i]
            keys.append(self.rotate(k, position))
            values.append(v)
            K, V = np.stack(keys, axis=1), np.stack(values, axis=1)  # [kv, t, d]
            out = np.empty((self.heads, self.head_dim))
            for j in range(self.heads):
                qj = self.rotate(q[j], position)
                scores = K[j // group] @ qj / np.sqrt(self.head_dim)
                p = np.exp(scores - scores.max())
                out[j] = (p / p.sum()) @ V[j // group]
            x = x + w("attn_output") @ out.reshape(-1)
            h = self.norm(x, w("ffn_norm"))
            gate, up = w("ffn_gate") @ h, w("ffn_up") @ h
            x = x + w("ffn_down") @ (gate / (1 + np.exp(-gate)) * up)
        return self.head @ self.norm(x, self.w["output_norm.weight"])

    def prompt(self, tokens: list[int], cache) -> np.ndarray:
        """Feeds a prompt into an empty cache; returns the logits after it."""
        logits = None
        for position, token in enumerate(tokens):
            logits = self.step(token, position, cache)
        return logits

    def greedy(self, tokens: list[int], count: int, stop: int | None = None) -> list[int]:
        """The first `count` greedy tokens after `tokens` (fewer at `stop`)."""
        cache = self.new_cache()
        logits = self.prompt(tokens, cache)
        out: list[int] = []
        while len(out) < count:
            token = int(np.argmax(logits))
            out.append(token)
            if token == stop:
                break
            logits = self.step(token, len(tokens) + len(out) - 1, cache)
        return out
