#!/usr/bin/env python3
"""Converts a llama-architecture GGUF model into the files kokon's enclave serves.

    gguf_to_onnx.py MODEL.gguf OUT_DIR [--name NAME]

writes into OUT_DIR:

* ``model.onnx``: a decoder with key/value-cache inputs and outputs that ONNX
  Runtime runs on CPU and CUDA (standard ONNX operators plus the
  ``com.microsoft`` ``MatMulNBits`` contrib operator, implemented by both
  execution providers). Inputs: ``input_ids`` and ``position_ids`` ``[batch,
  seq]``, ``attention_mask`` ``[batch, past + seq]`` (1 = attend; padding on
  the left), and ``past_key_values.{i}.key|value`` ``[batch, kv_heads, past,
  head_dim]``; outputs: ``logits`` ``[batch, vocab]`` for the last position and
  ``present.{i}.key|value`` ``[batch, kv_heads, past + seq, head_dim]``.
* ``tokenizer.json``: the GGUF's byte-level BPE vocabulary, merges and special
  tokens in the format of the Hugging Face ``tokenizers`` library.
* ``kokon-llm.json``: what the engine needs besides them: the model's name,
  shape (layers, heads, head size, context), special token ids and the GGUF's
  Jinja chat template, verbatim.

Weights are the GGUF's quantized values, represented exactly, in one of two
formats (``--weights``):

* ``f32`` (the default): every block dequantized to float32 (``Q4_1``:
  ``w = d*q + m``; ``Q8_0``: ``w = d*q``), multiplied with plain ``MatMul``.
* ``blocks``: the GGUF's blocks kept: a ``Q4_1`` block becomes a 4-bit
  ``MatMulNBits`` block with scale ``d`` and float zero point ``-m/d``, a
  ``Q8_0`` block an 8-bit one with scale ``d`` (zero point 128).

docs/llm.md gives the measurements (measure_formats.py) behind the default:
``blocks`` is 6x smaller but ONNX Runtime's CPU kernel for float zero points
dequantizes on every call, 8x slower per token than float32.

The conversion is deterministic: the same GGUF gives byte-identical files
(the digest of model.onnx is what clients pin). Nothing here is specific to
one model beyond what its GGUF metadata says; an unsupported architecture,
tensor type or tokenizer is refused by name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from gguf import GGMLQuantizationType, GGUFReader
from onnx import TensorProto, helper, numpy_helper

# ONNX Runtime 1.31 reads IR version 10 (opset 17 + com.microsoft).
IR_VERSION = 10
OPSET = 17
BLOCK = 32  # the block length of Q4_0/Q4_1/Q8_0

# Pre-tokenizers by GGUF `tokenizer.ggml.pre` (llama.cpp's names): the regexes
# split text before byte-level BPE. Each entry is a tokenizers
# `pre_tokenizer` object.
GPT2_SPLIT = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
PRE_TOKENIZERS = {
    "gpt2": GPT2_SPLIT,
    # SmolLM: every digit on its own, then GPT-2's split.
    "smollm": {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, GPT2_SPLIT],
    },
}

# GGUF token types (llama.cpp `llama_token_type`).
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED = 1, 3, 4


def fail(message: str) -> None:
    print(f"gguf_to_onnx: {message}", file=sys.stderr)
    sys.exit(1)


class Gguf:
    """The metadata and tensors of a GGUF file."""

    def __init__(self, path: Path):
        self.reader = GGUFReader(str(path))
        self.tensors = {t.name: t for t in self.reader.tensors}

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        return default if field is None else field.contents()

    def need(self, key: str):
        value = self.get(key)
        if value is None:
            fail(f"the GGUF has no {key!r}")
        return value


class Graph:
    """A small builder of ONNX nodes with unique, readable names."""

    def __init__(self, dequantize: bool):
        self.dequantize = dequantize
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}
        self.count = 0

    def op(self, op_type: str, inputs: list[str], name: str | None = None, domain: str = "", **attrs) -> str:
        self.count += 1
        out = name or f"{op_type.lower()}_{self.count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self.count}_{op_type}", domain=domain, **attrs))
        return out

    def const(self, name: str, array: np.ndarray) -> str:
        """An initializer; a name seen before must hold the same value."""
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        if self.initializers.setdefault(name, tensor) != tensor:
            raise ValueError(f"two different initializers named {name}")
        return name

    def linear(self, x: str, name: str, tensor) -> str:
        """x @ W^T for a GGUF weight W of shape [out, in] (ggml ne = [in, out])."""
        k, n = (int(d) for d in tensor.shape)
        kind = tensor.tensor_type
        if self.dequantize and kind in (GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q8_0):
            w = dequantized(tensor.data, kind, n, k)
            return self.op("MatMul", [x, self.const(f"{name}.weight_t", w.T.copy())])
        if kind == GGMLQuantizationType.Q4_1:
            packed, scales, zero_points = q4_1_blocks(tensor.data, n, k)
            inputs = [x, self.const(f"{name}.q4", packed), self.const(f"{name}.scales", scales),
                      self.const(f"{name}.zero_points", zero_points)]
            return self.op("MatMulNBits", inputs, domain="com.microsoft", K=k, N=n, bits=4, block_size=BLOCK)
        if kind == GGMLQuantizationType.Q8_0:
            q8, scales = q8_0_blocks(tensor.data, n, k)
            inputs = [x, self.const(f"{name}.q8", q8), self.const(f"{name}.scales", scales)]
            return self.op("MatMulNBits", inputs, domain="com.microsoft", K=k, N=n, bits=8, block_size=BLOCK)
        if kind in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            w = np.asarray(tensor.data, dtype=np.float32).reshape(n, k)
            return self.op("MatMul", [x, self.const(f"{name}.weight_t", w.T.copy())])
        fail(f"tensor {tensor.name} has type {kind.name}; supported: Q4_1, Q8_0, F16, F32")


def f16(raw: np.ndarray) -> np.ndarray:
    """Little-endian f16 from pairs of bytes, as f32."""
    return np.ascontiguousarray(raw).view("<f2").astype(np.float32)


def q4_1_blocks(data: np.ndarray, n: int, k: int):
    """GGUF Q4_1 rows as MatMulNBits 4-bit blocks, float scales and float zero points.

    A Q4_1 block is f16 d, f16 m, then 16 bytes: byte j holds element j in its
    low nibble and element j+16 in its high one; w = d*q + m. MatMulNBits
    packs elements 2i and 2i+1 into byte i (low, high) and computes
    w = (q - zero_point) * scale.
    """
    blocks = np.asarray(data, dtype=np.uint8).reshape(n, k // BLOCK, 20)
    d, m = f16(blocks[..., 0:2]).reshape(n, -1), f16(blocks[..., 2:4]).reshape(n, -1)
    qs = blocks[..., 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [n, blocks, 32] in element order
    # A block with d == 0 is the constant m: q = 1, zero point 0, scale m.
    flat = d == 0
    q[flat] = 1
    scale = np.where(flat, m, d).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero_point = np.where(flat, 0.0, -m / d).astype(np.float32)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, scale.reshape(-1), zero_point.reshape(-1)


def q8_0_blocks(data: np.ndarray, n: int, k: int):
    """GGUF Q8_0 rows (f16 d, 32 int8; w = d*q) as MatMulNBits 8-bit blocks (zero point 128)."""
    blocks = np.asarray(data, dtype=np.uint8).reshape(n, k // BLOCK, 34)
    d = f16(blocks[..., 0:2]).reshape(-1)
    q = (blocks[..., 2:34].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    return q, d


def dequantized(data: np.ndarray, kind, n: int, k: int) -> np.ndarray:
    """The float32 [n, k] values of quantized rows, from the same blocks as MatMulNBits gets."""
    if kind == GGMLQuantizationType.Q4_1:
        packed, scale, zero_point = q4_1_blocks(data, n, k)
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, k // BLOCK, BLOCK).astype(np.float32)
    else:
        q, scale = q8_0_blocks(data, n, k)
        q, zero_point = q.astype(np.float32), np.full_like(scale, 128.0)
    blocks = (q - zero_point.reshape(n, -1, 1)) * scale.reshape(n, -1, 1)
    return blocks.reshape(n, k).astype(np.float32)


def rms_norm(g: Graph, x: str, weight: str, eps: float) -> str:
    squared = g.op("Mul", [x, x])
    mean = g.op("ReduceMean", [squared], axes=[-1], keepdims=1)
    root = g.op("Sqrt", [g.op("Add", [mean, g.const(f"{weight}.eps", np.array(eps, np.float32))])])
    return g.op("Mul", [g.op("Div", [x, root]), weight])


def build(model: Gguf, name: str, dequantize: bool = False) -> tuple[onnx.ModelProto, dict]:
    arch = model.need("general.architecture")
    if arch != "llama":
        fail(f"architecture {arch!r} is not supported (supported: llama)")
    layers = int(model.need("llama.block_count"))
    width = int(model.need("llama.embedding_length"))
    heads = int(model.need("llama.attention.head_count"))
    kv_heads = int(model.get("llama.attention.head_count_kv", heads))
    head_dim = width // heads
    rope_dim = int(model.get("llama.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        fail(f"partial rotary embedding ({rope_dim} of {head_dim}) is not supported")
    rope_base = float(model.get("llama.rope.freq_base", 10000.0))
    eps = float(model.need("llama.attention.layer_norm_rms_epsilon"))
    context = int(model.need("llama.context_length"))
    if model.get("llama.rope.scaling.type") not in (None, "none"):
        fail("rope scaling is not supported")
    embedding = model.tensors["token_embd.weight"]
    vocab = int(embedding.shape[1])
    head = model.tensors.get("output.weight", embedding)  # tied when absent
    group = heads // kv_heads

    g = Graph(dequantize)
    # --- Embedding: rows of the quantized table, dequantized with plain ops.
    if embedding.tensor_type == GGMLQuantizationType.Q8_0 and not dequantize:
        q8, scales = q8_0_blocks(embedding.data, vocab, width)
        table = g.const("token_embd.q8", q8)  # shared with a tied output head
        table_scales = g.op("Reshape", [g.const("token_embd.scales", scales),
                                        g.const("scales_shape", np.array([vocab, width // BLOCK, 1], np.int64))])
        rows = g.op("Cast", [g.op("Gather", [table, "input_ids"], axis=0)], to=TensorProto.FLOAT)
        centred = g.op("Sub", [rows, g.const("q8.zero_point", np.array(128.0, np.float32))])
        scaled = g.op("Mul", [centred, g.op("Gather", [table_scales, "input_ids"], axis=0)])
        batch_seq = g.op("Slice", [g.op("Shape", ["input_ids"]), g.const("zero1", np.array([0], np.int64)),
                                   g.const("two1", np.array([2], np.int64))])
        shape = g.op("Concat", [batch_seq, g.const("width1", np.array([width], np.int64))], axis=0)
        x = g.op("Reshape", [scaled, shape])
    elif dequantize and embedding.tensor_type == GGMLQuantizationType.Q8_0:
        table = g.const("token_embd.weight", dequantized(embedding.data, embedding.tensor_type, vocab, width))
        x = g.op("Gather", [table, "input_ids"], axis=0)
    elif embedding.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        table = g.const("token_embd.weight", np.asarray(embedding.data, np.float32).reshape(vocab, width))
        x = g.op("Gather", [table, "input_ids"], axis=0)
    else:
        fail(f"token_embd.weight has type {embedding.tensor_type.name}; supported: Q8_0, F16, F32")

    # --- Attention mask [batch, 1, 1, seq, total]: causal and not padding.
    total = g.op("Gather", [g.op("Shape", ["attention_mask"]), g.const("one", np.array(1, np.int64))], axis=0)
    seq = g.op("Gather", [g.op("Shape", ["input_ids"]), "one"], axis=0)
    past = g.op("Sub", [total, seq])
    q_pos = g.op("Unsqueeze", [g.op("Range", [past, total, "one"]), g.const("axis1", np.array([1], np.int64))])
    k_pos = g.op("Range", [g.const("zero", np.array(0, np.int64)), total, "one"])
    causal = g.op("LessOrEqual", [k_pos, q_pos])  # [seq, total]
    keep = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const("axes123", np.array([1, 2, 3], np.int64))])],
                to=TensorProto.BOOL)
    allowed = g.op("And", [causal, keep])  # [batch, 1, 1, seq, total]
    lowest = g.const("lowest", np.array(np.finfo(np.float32).min, np.float32))

    # --- Rotary embedding, GGML's "normal" mode: adjacent pairs (x[2i], x[2i+1])
    # rotate by pos * base^(-2i/d) (the GGUF's q/k weights are laid out for it).
    inv_freq = rope_base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.arange(context, dtype=np.float64)[:, None] * inv_freq[None, :]
    cos = g.op("Unsqueeze", [g.op("Gather", [g.const("rope.cos", np.cos(angles).astype(np.float32)), "position_ids"],
                                  axis=0), g.const("axis2", np.array([2], np.int64))])  # [b, s, 1, d/2]
    sin = g.op("Unsqueeze", [g.op("Gather", [g.const("rope.sin", np.sin(angles).astype(np.float32)), "position_ids"],
                                  axis=0), "axis2"])
    heads_shape = g.const("heads_shape", np.array([0, 0, -1, head_dim], np.int64))
    pair_shape = g.const("pair_shape", np.array([0, 0, -1, head_dim // 2, 2], np.int64))
    last = g.const("last", np.array([-1], np.int64))

    def rope(t: str) -> str:
        pairs = g.op("Reshape", [t, pair_shape])  # [b, s, h, d/2, 2]
        even, odd = (g.op("Squeeze", [g.op("Slice", [pairs, g.const(f"s{i}", np.array([i], np.int64)),
                                                      g.const(f"e{i}", np.array([i + 1], np.int64)), last]), last])
                     for i in (0, 1))
        a = g.op("Sub", [g.op("Mul", [even, cos]), g.op("Mul", [odd, sin])])
        b = g.op("Add", [g.op("Mul", [even, sin]), g.op("Mul", [odd, cos])])
        rotated = g.op("Concat", [g.op("Unsqueeze", [a, last]), g.op("Unsqueeze", [b, last])], axis=-1)
        return g.op("Reshape", [rotated, heads_shape])

    grouped_q = g.const("grouped_q", np.array([0, kv_heads, group, -1, head_dim], np.int64))
    axis2 = "axis2"
    merged = g.const("merged", np.array([0, 0, width], np.int64))
    scale = g.const("attn_scale", np.array(1.0 / np.sqrt(head_dim), np.float32))
    graph_inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
    ]
    graph_outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab])]

    for i in range(layers):
        t = lambda suffix: model.tensors[f"blk.{i}.{suffix}.weight"]  # noqa: E731
        norm = lambda suffix: g.const(f"blk.{i}.{suffix}.weight",  # noqa: E731
                                      np.asarray(t(suffix).data, np.float32).reshape(width))
        h = rms_norm(g, x, norm("attn_norm"), eps)
        q = rope(g.op("Reshape", [g.linear(h, f"blk.{i}.attn_q", t("attn_q")), heads_shape]))
        k = rope(g.op("Reshape", [g.linear(h, f"blk.{i}.attn_k", t("attn_k")), heads_shape]))
        v = g.op("Reshape", [g.linear(h, f"blk.{i}.attn_v", t("attn_v")), heads_shape])
        past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        for n in (past_k, past_v):
            graph_inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", kv_heads, "past", head_dim]))
        keys = g.op("Concat", [past_k, g.op("Transpose", [k], perm=[0, 2, 1, 3])], name=f"present.{i}.key", axis=2)
        values = g.op("Concat", [past_v, g.op("Transpose", [v], perm=[0, 2, 1, 3])], name=f"present.{i}.value", axis=2)
        for n in (keys, values):
            graph_outputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", kv_heads, "total", head_dim]))
        # Grouped-query attention: query head j reads key/value head j // group.
        qg = g.op("Reshape", [g.op("Transpose", [q], perm=[0, 2, 1, 3]), grouped_q])  # [b, kv, group, s, d]
        kt = g.op("Unsqueeze", [g.op("Transpose", [keys], perm=[0, 1, 3, 2]), axis2])  # [b, kv, 1, d, total]
        scores = g.op("Mul", [g.op("MatMul", [qg, kt]), scale])
        probs = g.op("Softmax", [g.op("Where", [allowed, scores, lowest])], axis=-1)
        attended = g.op("MatMul", [probs, g.op("Unsqueeze", [values, axis2])])  # [b, kv, group, s, d]
        heads_out = g.op("Reshape", [attended, g.const(f"ungroup_{i}", np.array([0, heads, -1, head_dim], np.int64))])
        out = g.op("Reshape", [g.op("Transpose", [heads_out], perm=[0, 2, 1, 3]), merged])
        x = g.op("Add", [x, g.linear(out, f"blk.{i}.attn_output", t("attn_output"))])
        h = rms_norm(g, x, norm("ffn_norm"), eps)
        gate = g.linear(h, f"blk.{i}.ffn_gate", t("ffn_gate"))
        up = g.linear(h, f"blk.{i}.ffn_up", t("ffn_up"))
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
        x = g.op("Add", [x, g.linear(act, f"blk.{i}.ffn_down", t("ffn_down"))])

    final = g.const("output_norm.weight", np.asarray(model.tensors["output_norm.weight"].data, np.float32).reshape(width))
    last_position = g.op("Gather", [x, g.const("minus_one", np.array(-1, np.int64))], axis=1)  # [b, width]
    h = rms_norm(g, last_position, final, eps)
    if head is embedding and embedding.tensor_type == GGMLQuantizationType.Q8_0 and not dequantize:
        # The tied head reuses the embedding's initializers.
        logits = g.op("MatMulNBits", [h, "token_embd.q8", "token_embd.scales"], domain="com.microsoft",
                      K=width, N=vocab, bits=8, block_size=BLOCK)
    else:
        logits = g.linear(h, "output", head)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="logits"))

    graph = helper.make_graph(g.nodes, name, graph_inputs, graph_outputs, list(g.initializers.values()))
    onnx_model = helper.make_model(graph, ir_version=IR_VERSION, producer_name="kokon gguf_to_onnx",
                                   opset_imports=[helper.make_opsetid("", OPSET),
                                                  helper.make_opsetid("com.microsoft", 1)])
    config = {
        "name": name,
        "architecture": arch,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "vocab": vocab,
        "context": context,
        "bos_token_id": model.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": int(model.need("tokenizer.ggml.eos_token_id")),
        "add_bos": bool(model.get("tokenizer.ggml.add_bos_token", False)),
        "chat_template": model.need("tokenizer.chat_template"),
    }
    return onnx_model, config


def tokenizer_json(model: Gguf) -> dict:
    kind = model.need("tokenizer.ggml.model")
    if kind != "gpt2":
        fail(f"tokenizer model {kind!r} is not supported (supported: gpt2, byte-level BPE)")
    pre = model.get("tokenizer.ggml.pre", "gpt2")
    if pre not in PRE_TOKENIZERS:
        fail(f"pre-tokenizer {pre!r} is not supported (supported: {', '.join(sorted(PRE_TOKENIZERS))})")
    tokens = list(model.need("tokenizer.ggml.tokens"))
    types = list(model.need("tokenizer.ggml.token_type"))
    merges = list(model.need("tokenizer.ggml.merges"))
    specials = [{"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for i, (tok, kind) in enumerate(zip(tokens, types)) if kind in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    unknown = model.get("tokenizer.ggml.unknown_token_id")
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": specials,
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS[pre],
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None if unknown is None else tokens[int(unknown)],
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": merges,
        },
    }


def write(path: Path, data: bytes) -> str:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--name", help="the served model name (default: the GGUF's file name)")
    parser.add_argument("--weights", choices=["f32", "blocks"], default="f32",
                        help="float32 weights and MatMul (default), or the GGUF's blocks and MatMulNBits")
    args = parser.parse_args()
    model = Gguf(args.gguf)
    name = args.name or args.gguf.stem
    onnx_model, config = build(model, name, args.weights == "f32")
    args.out.mkdir(parents=True, exist_ok=True)
    digests = {
        "model.onnx": write(args.out / "model.onnx", onnx_model.SerializeToString(deterministic=True)),
        "tokenizer.json": write(args.out / "tokenizer.json",
                                json.dumps(tokenizer_json(model), ensure_ascii=False, indent=1).encode()),
        "kokon-llm.json": write(args.out / "kokon-llm.json", json.dumps(config, indent=1).encode()),
    }
    for file, digest in digests.items():
        print(f"{digest}  {args.out / file}")


if __name__ == "__main__":
    main()
