"""The peer baseline of `kokon-bench`: llama.cpp (llama-cpp-python) on the
same GGUF file, the same conversations and the same greedy decoding as the
kokon engine, one stream at a time, on the CPUs it is given.

Usage: llamacpp_bench.py GGUF PROMPTS.json MAX_TOKENS ROUNDS CPU[,CPU...]

PROMPTS.json is a list of conversations (lists of {"role", "content"}).
Prints one JSON object: the median over rounds of the median time to first
token (ms) and of the decode rate (tokens after the first, per second of
decoding), and the llama.cpp version."""

import json
import os
import statistics
import sys
import time


def main():
    gguf, prompts, max_tokens, rounds, cpus = sys.argv[1:6]
    cpus = [int(c) for c in cpus.split(",")]
    os.sched_setaffinity(0, cpus)
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=gguf,
        n_ctx=2048,
        n_threads=len(cpus),
        n_threads_batch=len(cpus),
        n_batch=128,
        verbose=False,
    )
    conversations = json.load(open(prompts))
    ttfts, rates = [], []
    for _ in range(int(rounds)):
        round_ttft, round_rate = [], []
        for messages in conversations:
            start = time.perf_counter()
            first, tokens = None, 0
            for chunk in llm.create_chat_completion(
                messages=messages,
                max_tokens=int(max_tokens),
                temperature=0.0,
                stream=True,
            ):
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    tokens += 1
                    if first is None:
                        first = time.perf_counter()
            end = time.perf_counter()
            if first is None or tokens < 2:
                continue
            round_ttft.append((first - start) * 1e3)
            round_rate.append((tokens - 1) / (end - first))
        ttfts.append(statistics.median(round_ttft))
        rates.append(statistics.median(round_rate))
    print(
        json.dumps(
            {
                "ttft_ms": statistics.median(ttfts),
                "decode_tok_s": statistics.median(rates),
                "version": llama_cpp.__version__,
                "threads": len(cpus),
            }
        )
    )


if __name__ == "__main__":
    main()
