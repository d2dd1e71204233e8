"""Drives `kokon proxy` with the official `openai` Python package, as an
unmodified application would. Usage: openai_client.py BASE_URL PHASE, where
PHASE is `all` (models, whole and streamed chat, usage, legacy completions,
errors) or `again` (one chat completion). Prints one JSON line of what it
saw; any mismatch raises (exit status 1)."""

import json
import sys

import openai

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
ANSWER = "The capital of France is Paris."


def chat(client):
    answer = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=32
    )
    content = answer.choices[0].message.content
    assert content == ANSWER, content
    assert answer.usage.completion_tokens > 0, answer.usage
    return answer


def main():
    base, phase = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0)
    seen = {}
    if phase == "again":
        seen["content"] = chat(client).choices[0].message.content
        print(json.dumps(seen))
        return
    ids = [m.id for m in client.models.list()]
    assert ids == [MODEL], ids
    whole = chat(client)

    # Streamed: the same answer, in chunks, without usage unless asked.
    pieces, chunks = [], 0
    for chunk in client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=32, stream=True
    ):
        chunks += 1
        assert chunk.usage is None, chunk
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == ANSWER, pieces
    assert chunks > 5, chunks
    usage = None
    for chunk in client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,
        temperature=0,
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
    assert usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens, usage

    legacy = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0
    )
    assert legacy.usage.completion_tokens == 5, legacy.usage

    # Errors: OpenAI's exceptions, with the enclave's message.
    try:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        raise AssertionError("an unknown model answered")
    except openai.NotFoundError as e:
        assert "gpt-4o" in str(e), e
        seen["not_found"] = e.status_code
    try:
        client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=100000)
        raise AssertionError("a request past the context answered")
    except openai.BadRequestError as e:
        assert "context" in str(e), e
        seen["bad_request"] = e.status_code
    seen.update(
        content=whole.choices[0].message.content,
        stream_chunks=chunks,
        usage=usage.completion_tokens,
        openai=openai.__version__,
    )
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
