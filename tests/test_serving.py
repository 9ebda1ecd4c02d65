"""`rlgf serve` against the official `openai` client: completions and chat, streamed or not, usage, n,
max_completion_tokens, logprobs, and a 400 in OpenAI's error shape for every malformed field."""

from __future__ import annotations

import http.client
import json
import shutil
import threading

import openai
import pytest
import torch
from transformers import AutoTokenizer

from rlgf_pl.policies import load_policy
from rlgf_pl.serving import CompletionEngine, CompletionServer

PROMPTS = ["the movie was", "i really liked the plot and"]


@pytest.fixture(scope="module")
def chat_model_dir(toy_model_dir, tmp_path_factory):
    """The toy GPT-2 with a chat template (each turn's content, then a space)."""
    directory = tmp_path_factory.mktemp("chat-toy")
    shutil.copytree(toy_model_dir, directory, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = "{% for message in messages %}{{ message['content'] }} {% endfor %}"
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def served(chat_model_dir):
    policy = load_policy(str(chat_model_dir)).eval().requires_grad_(False)
    server = CompletionServer(("127.0.0.1", 0), CompletionEngine(policy, 16), "toy")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield policy, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{served[1]}/v1", api_key="unused", max_retries=0)


def _token_count(policy, text: str) -> int:
    return len(policy.tokenizer(text)["input_ids"])


def test_completions_count_usage_in_tokens_with_n_and_several_prompts(served, client):
    policy, _ = served
    answer = client.completions.create(model="toy", prompt=PROMPTS, n=2, max_tokens=6, temperature=1.0, seed=3,
                                       logprobs=0)
    assert [choice.index for choice in answer.choices] == [0, 1, 2, 3]
    assert answer.usage.prompt_tokens == sum(_token_count(policy, p) for p in PROMPTS)  # each prompt once
    written = [len(choice.logprobs.tokens) for choice in answer.choices]
    assert answer.usage.completion_tokens == sum(written)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    for choice, count in zip(answer.choices, written):
        assert 1 <= count <= 6 and (choice.finish_reason == "length") == (count == 6 and "<eos>" not in
                                                                        choice.logprobs.tokens)
        assert "".join(choice.logprobs.tokens).strip() == choice.text.strip()
    again = client.completions.create(model="toy", prompt=PROMPTS, n=2, max_tokens=6, temperature=1.0, seed=3)
    assert [c.text for c in again.choices] == [c.text for c in answer.choices]  # a seed repeats the request


def test_streamed_completions_end_in_done_and_equal_the_plain_answer(served, client):
    plain = client.completions.create(model="toy", prompt=PROMPTS, max_tokens=8, temperature=0)
    texts, reasons, usage = {}, {}, None
    stream = client.completions.create(model="toy", prompt=PROMPTS, max_tokens=8, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            reasons[choice.index] = choice.finish_reason or reasons.get(choice.index)
        usage = chunk.usage or usage
    assert [texts[i] for i in range(2)] == [c.text for c in plain.choices]
    assert [reasons[i] for i in range(2)] == [c.finish_reason for c in plain.choices]
    assert usage.model_dump() == plain.usage.model_dump()

    raw = http.client.HTTPConnection("127.0.0.1", served[1])
    raw.request("POST", "/v1/completions", json.dumps({"prompt": "the", "max_tokens": 2, "stream": True}),
                {"Content-Type": "application/json"})
    response = raw.getresponse()
    assert response.getheader("Content-Type") == "text/event-stream"
    events = [line for line in response.read().decode().split("\n\n") if line]
    assert all(event.startswith("data: ") for event in events) and events[-1] == "data: [DONE]"


def test_chat_streams_honours_max_completion_tokens_and_reads_content_parts(served, client):
    messages = [{"role": "system", "content": "the"},
                {"role": "user", "content": [{"type": "text", "text": "movie"}, {"type": "text", "text": "was"}]}]
    plain = client.chat.completions.create(model="toy", messages=messages, max_completion_tokens=5, temperature=0,
                                           n=2)
    assert len(plain.choices) == 2 and plain.choices[0].message.content == plain.choices[1].message.content
    assert plain.choices[0].message.role == "assistant"
    assert plain.usage.prompt_tokens == _token_count(served[0], "the movie\nwas ")
    assert 1 <= plain.usage.completion_tokens <= 10
    deltas, roles = {}, set()
    for chunk in client.chat.completions.create(model="toy", messages=messages, max_completion_tokens=5,
                                                temperature=0, n=2, stream=True):
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            roles.add(choice.delta.role)
            deltas[choice.index] = deltas.get(choice.index, "") + (choice.delta.content or "")
    assert "assistant" in roles and [deltas[0], deltas[1]] == [c.message.content for c in plain.choices]
    unbounded = client.chat.completions.create(model="toy", messages=messages, temperature=0)
    assert unbounded.usage.completion_tokens > 16 or unbounded.choices[0].finish_reason == "stop"


def test_logprobs_are_the_models_own(served, client):
    policy, _ = served
    answer = client.completions.create(model="toy", prompt="the movie was", max_tokens=5, temperature=0, logprobs=3)
    logprobs = answer.choices[0].logprobs
    ids = torch.tensor([policy.tokenizer.convert_tokens_to_ids([t.strip() for t in logprobs.tokens])])
    query = policy.encode_prompts(["the movie was"], None)
    expected, _ = policy(*query, ids, torch.ones_like(ids))
    assert logprobs.token_logprobs == pytest.approx(expected[0].tolist(), abs=1e-5)
    for chosen, top in zip(logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) == 3 and max(top.values()) == pytest.approx(chosen, abs=1e-5)  # greedy: the best one
    chat = client.chat.completions.create(model="toy", messages=[{"role": "user", "content": "the movie was"}],
                                          max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens and all(len(entry.top_logprobs) == 2 for entry in content)


MALFORMED = [
    ("chat", {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
    ("chat", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
    ("chat", {"messages": []}, "messages"),
    ("chat", {"messages": [{"role": "user", "content": "a"}], "stop": 5}, "stop"),
    ("chat", {"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2}, "top_logprobs"),
    ("chat", {"messages": [{"role": "user", "content": "a"}], "max_completion_tokens": 0}, "max_completion_tokens"),
    ("chat", {"messages": [{"role": "user", "content": "a"}], "response_format": {"type": "json_object"}},
     "response_format"),
    ("chat", {"messages": [{"role": "user", "content": "a"}], "n": "2"}, "n"),
    ("completions", {"prompt": 5}, "prompt"),
    ("completions", {"prompt": "a", "stop": [1]}, "stop"),
    ("completions", {"prompt": "a", "temperature": "hot"}, "temperature"),
    ("completions", {"prompt": "a", "logprobs": 9}, "logprobs"),
    ("completions", {"prompt": "a", "echo": True, "logprobs": 1}, "echo"),
    ("completions", {"prompt": "a", "max_tokens": 100_000}, "max_tokens"),
    ("completions", {"prompt": "a", "n": 0}, "n"),
    ("completions", {"prompt": "a", "seed": 1.5}, "seed"),
    ("completions", {"prompt": "a", "seed": 2**64}, "seed"),
    ("completions", {"prompt": "a \ud800"}, None),
    ("completions", {"prompt": "a", "frequency_penalty": 1.0}, "frequency_penalty"),
    ("completions", {"prompt": "a", "stream": "yes"}, "stream"),
    ("completions", {"prompt": "a", "stream_options": {"include_usage": True}}, "stream_options"),
    ("completions", {"prompt": "a", "foo": 1}, "foo"),
    ("completions", {"prompt": "a", "model": 5}, "model"),
    ("completions", {"prompt": [[1, 2], [-1]]}, "prompt"),
    ("completions", {"prompt": [[1, 2]], "echo": True}, "echo"),
    ("completions", {"prompt": [[1, 100_000]]}, "prompt"),
    ("completions", {"prompt": "a", "max_tokens": 4, "min_tokens": 5}, "min_tokens"),
    ("completions", {"prompt": "a", "return_token_ids": 1}, "return_token_ids"),
]


@pytest.mark.parametrize(("endpoint", "body", "param"), MALFORMED, ids=[f"{e}-{p}" for e, _, p in MALFORMED])
def test_malformed_fields_get_a_400_in_openais_shape(served, endpoint, body, param):
    raw = http.client.HTTPConnection("127.0.0.1", served[1])
    raw.request("POST", f"/v1/{endpoint.replace('chat', 'chat/completions')}", json.dumps({"model": "toy"} | body),
                {"Content-Type": "application/json"})
    response = raw.getresponse()
    error = json.loads(response.read())["error"]
    assert response.status == 400, error
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_the_client_raises_openais_errors(client):
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: best_effort") as caught:
        client.completions.create(model="toy", prompt="a", extra_body={"best_effort": True})
    assert caught.value.status_code == 400 and caught.value.param == "best_effort"
    with pytest.raises(openai.NotFoundError, match="'gpt-4o' does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
    for raw in (b"not json", b"[1, 2]", b"\xff"):
        connection = http.client.HTTPConnection("127.0.0.1", client.base_url.port)
        connection.request("POST", "/v1/completions", raw, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 400 and json.loads(response.read())["error"]["type"] == "invalid_request_error"


def test_a_stop_string_cuts_the_text_and_the_token_count(client):
    greedy = client.completions.create(model="toy", prompt=PROMPTS[1], max_tokens=6, temperature=0, logprobs=0)
    tokens = greedy.choices[0].logprobs.tokens
    assert tokens[2] not in tokens[:2]  # the toy's greedy text: ' and and seen ...'
    stopped = client.completions.create(model="toy", prompt=PROMPTS[1], max_tokens=6, temperature=0,
                                        stop=[tokens[2].strip(), "never written"])
    assert stopped.choices[0].text == "".join(tokens[:2]) + " "
    assert stopped.choices[0].finish_reason == "stop" and stopped.usage.completion_tokens == 3


def test_token_id_prompts_equal_their_text_and_return_their_tokens(served, client):
    policy, _ = served
    ids = policy.tokenizer(PROMPTS)["input_ids"]
    by_text = client.completions.create(model="toy", prompt=PROMPTS, max_tokens=6, temperature=0)
    by_ids = client.completions.create(model="toy", prompt=ids, max_tokens=6, temperature=0,
                                       extra_body={"return_token_ids": True})
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    for choice in by_ids.choices:
        assert choice.finish_reason == "stop" or len(choice.token_ids) == 6
        assert policy.tokenizer.decode(choice.token_ids, skip_special_tokens=True).strip() == choice.text.strip()
    whole = client.completions.create(model="toy", prompt=ids, max_tokens=6, temperature=0,
                                      extra_body={"return_token_ids": True, "min_tokens": 6})
    assert all(len(choice.token_ids) == 6 for choice in whole.choices)  # no end before min_tokens


def test_a_port_in_use_is_named_before_the_model_loads(tmp_path, capsys):
    import socket

    from rlgf_pl.serving.server import serve_main

    with socket.socket() as taken:  # a peer's server on the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            serve_main([str(tmp_path / "no-model-here"), "--port", str(port)])  # the model would fail to load
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in message and "--port 0" in message and "no-model-here" not in message


def test_requests_without_a_seed_draw_fresh_noise_and_many_at_once_are_all_answered(served, client):
    from concurrent.futures import ThreadPoolExecutor

    def ask(_):  # a long continuation: two equal draws would be a coincidence of 24 tokens
        return client.completions.create(model="toy", prompt=PROMPTS[0], max_tokens=24, temperature=1.0,
                                         extra_body={"top_k": 0, "min_tokens": 24}).choices[0].text

    with ThreadPoolExecutor(48) as pool:  # more at once than a default listen backlog holds
        texts = list(pool.map(ask, range(48)))
    assert len(set(texts)) == 48
