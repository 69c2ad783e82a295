from services.gateway.openai.usage import usage_of_response, usage_of_stream_tail


def test_usage_from_a_full_response() -> None:
    assert usage_of_response(b'{"usage": {"prompt_tokens": 5, "completion_tokens": 7}}') == (5, 7)
    assert usage_of_response(b"not json") == (0, 0)


def test_usage_from_the_final_stream_chunk_timings() -> None:
    tail = (
        b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
        b'data: {"choices":[{"finish_reason":"stop","delta":{}}],"timings":{"prompt_n":12,"predicted_n":3}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert usage_of_stream_tail(tail) == (12, 3)


def test_stream_without_usage_counts_nothing() -> None:
    assert usage_of_stream_tail(b'data: {"choices":[]}\n\ndata: [DONE]\n\n') == (0, 0)
