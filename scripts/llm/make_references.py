#!/usr/bin/env python3
"""Regenerates the committed greedy reference outputs of a GGUF chat model.

    make_references.py MODEL.gguf OUT.json [--tokens 32]

For each conversation in PROMPTS, independently of kokon's own code:
the prompt is rendered with the GGUF's chat template by Jinja2 (Python),
tokenized by llama.cpp (llama-cpp-python, reading the GGUF's vocabulary
itself), and continued greedily by the numpy forward pass of reference.py for
up to --tokens tokens (fewer when the end-of-sequence token comes). The Rust
engine's test renders, tokenizes and decodes the same conversations with its
own code and must match token for token.

Needs `llama-cpp-python` and `jinja2` besides the packages of `just setup`:
pip install llama-cpp-python jinja2 (llama-cpp-python builds from source).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jinja2
from gguf import GGUFReader
from llama_cpp import Llama

sys.path.insert(0, str(Path(__file__).parent))
from reference import Reference  # noqa: E402

SYSTEM_PIRATE = {"role": "system", "content": "You are a pirate. Answer in one sentence."}
PROMPTS: list[list[dict]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "What is 123 + 456?"}],
    [{"role": "user", "content": "Explain photosynthesis in one sentence."}],
    [{"role": "user", "content": "List three primary colors."}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}],
    [{"role": "user", "content": "Write a Python function that reverses a string."}],
    [{"role": "user", "content": "Who wrote Romeo and Juliet?"}],
    [{"role": "user", "content": "Give me a name for a black cat."}],
    [{"role": "user", "content": "Why is the sky blue?"}],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Summarize: The quick brown fox jumps over the lazy dog."}],
    [{"role": "user", "content": "Is 17 a prime number? Answer yes or no."}],
    [{"role": "user", "content": "Écris une phrase en français sur le café ☕."}],
    [{"role": "user", "content": "What does CPU stand for?"}],
    [SYSTEM_PIRATE, {"role": "user", "content": "Where is the treasure?"}],
    [{"role": "system", "content": "Reply with JSON only."},
     {"role": "user", "content": "Give an object with keys name and age for Alice, 30."}],
    [{"role": "user", "content": "My name is Ada."},
     {"role": "assistant", "content": "Nice to meet you, Ada!"},
     {"role": "user", "content": "What is my name?"}],
    [{"role": "user", "content": "Count from 1 to 10."}],
    [{"role": "user", "content": "Tell me a joke about computers."}],
    [{"role": "user", "content": "How many legs does a spider have?"}],
    [{"role": "user", "content": "Describe a confidential computing enclave in two sentences."}],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    fields = GGUFReader(str(args.gguf)).fields
    # As transformers and llama-cpp-python compile chat templates.
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(fields["tokenizer.chat_template"].contents())
    eos = int(fields["tokenizer.ggml.eos_token_id"].contents())
    llama = Llama(str(args.gguf), vocab_only=True, verbose=False)
    model = Reference(args.gguf)
    cases = []
    for messages in PROMPTS:
        text = template.render(messages=messages, add_generation_prompt=True)
        prompt = llama.tokenize(text.encode(), add_bos=False, special=True)
        output = model.greedy(prompt, args.tokens, stop=eos)
        completion = llama.detokenize([t for t in output if t != eos]).decode("utf-8", errors="replace")
        cases.append({"messages": messages, "prompt_text": text, "prompt_tokens": prompt,
                      "greedy_tokens": output, "completion": completion})
        print(f"{len(prompt):3} + {len(output):2} tokens: {completion!r}", file=sys.stderr)
    document = {
        "model": args.gguf.name,
        "tokens": args.tokens,
        "generated_by": "scripts/llm/make_references.py (Jinja2, llama.cpp tokenizer, numpy float64 forward pass)",
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
