"""The HTTP side of `rlgf serve`: routes, API key, JSON or server-sent events, OpenAI's error shape.

Besides OpenAI's routes, the weight-sync routes of RL training (the served engine, `rlgf_pl/engines/served.py`):
`POST /update_weights_from_disk {"model_path", "weight_version"}` (SGLang's) loads a full state dict;
`POST /v1/load_lora_adapter {"lora_name", "lora_path"}` and `/v1/unload_lora_adapter {"lora_name"}` (vLLM's
runtime LoRA routes) serve adapters under their own name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from rlgf_pl.errors import WeightSyncError
from rlgf_pl.policies.loading import load_policy
from rlgf_pl.serving.engine import CompletionEngine
from rlgf_pl.serving.requests import CompletionRequest, RequestError, chat_messages, parse_request
from rlgf_pl.serving.responses import response_body, stream_chunks

SYNC_ROUTES = ("/update_weights_from_disk", "/load_lora_adapter", "/unload_lora_adapter")


class CompletionServer(ThreadingHTTPServer):
    """Parses OpenAI-style requests into jobs for the engine and answers in the same style."""

    daemon_threads = True
    request_queue_size = 1024
    """The listen backlog (socketserver's default of 5 resets connections when clients send many requests at once,
    as the served engine with `seed: true` and the API guide do)."""

    def __init__(self, address: tuple[str, int], engine: CompletionEngine, served_name: str,
                 api_key: str | None = None) -> None:
        super().__init__(address, CompletionHandler)
        self.engine = engine
        self.served_name = served_name
        self.api_key = api_key

    def models(self) -> dict:
        adapters = [{"id": name, "object": "model", "created": 0, "owned_by": "rlgf", "parent": self.served_name}
                    for name in self.engine.served_adapters()]
        return {"object": "list", "data": [{"id": self.served_name, "object": "model", "created": 0,
                                            "owned_by": "rlgf"}, *adapters]}

    def request(self, body: Any, chat: bool) -> CompletionRequest:
        request = parse_request(body, chat, self.served_name, self.engine.served_adapters())
        return dataclasses.replace(request, texts=(self._chat_text(body),)) if chat else request

    def complete(self, request: CompletionRequest) -> tuple[list, str, int]:
        """The request's choices, with the answer's id and creation time."""
        choices = self.engine.submit(self.engine.jobs_for(request))
        return choices, f"{'chatcmpl' if request.chat else 'cmpl'}-{uuid.uuid4().hex}", int(time.time())

    def sync(self, path: str, body: Any) -> dict:
        """A weight-sync route's answer; RequestError for a bad body, WeightSyncError for weights that do not fit."""
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "The request body must be a JSON object.")
        if path == "/update_weights_from_disk":
            folder, version = body.get("model_path"), body.get("weight_version")
            if not isinstance(folder, str) or not isinstance(version, (str, int)) or isinstance(version, bool):
                raise RequestError(HTTPStatus.BAD_REQUEST, "update_weights_from_disk takes {\"model_path\": a folder, "
                                                           "\"weight_version\": a string or integer}.", "model_path")
            self.engine.load_weights(folder, str(version))
            return {"success": True, "message": f"Loaded the weights in {folder} as version {version}.",
                    "weight_version": str(version)}
        name = body.get("lora_name")
        if not isinstance(name, str) or not name or name == self.served_name:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"'lora_name' must be a non-empty string other than the base "
                                                       f"model's name {self.served_name!r}.", "lora_name")
        if path == "/load_lora_adapter":
            folder = body.get("lora_path")
            if not isinstance(folder, str):
                raise RequestError(HTTPStatus.BAD_REQUEST, "'lora_path' must be the adapter's folder.", "lora_path")
            self.engine.load_adapter(name, folder)
            return {"success": True, "message": f"Success: LoRA adapter '{name}' added successfully."}
        if not self.engine.unload_adapter(name):
            raise RequestError(HTTPStatus.NOT_FOUND, f"No LoRA adapter {name!r} is loaded.", "lora_name")
        return {"success": True, "message": f"Success: LoRA adapter '{name}' removed successfully."}

    def _chat_text(self, body: dict) -> str:
        messages = chat_messages(body)
        tokenizer = self.engine.policy.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{self.served_name!r} has no chat template; use "
                                                       "/v1/completions.", "messages")
        go_on = bool(body.get("continue_final_message")) and messages[-1]["role"] == "assistant"
        add_prompt = body.get("add_generation_prompt")
        with self.engine.tokenizer_lock:
            return tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=go_on,
                                                 add_generation_prompt=not go_on if add_prompt is None else add_prompt)


class CompletionHandler(BaseHTTPRequestHandler):
    server: CompletionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet: one line at start is enough)
        pass

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _events(self, chunks) -> None:
        """Server-sent events in chunked transfer encoding: one `data:` event per chunk, then `data: [DONE]`."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [*(json.dumps(chunk) for chunk in chunks), "[DONE]"]:
            data = f"data: {event}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _sync(self, path: str, raw: bytes) -> None:
        try:
            self._answer(HTTPStatus.OK, self.server.sync(path, json.loads(raw or b"{}")))
        except RequestError as error:
            self._error(error)
        except (WeightSyncError, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
            self._answer(HTTPStatus.BAD_REQUEST, {"success": False, "message": f"{type(error).__name__}: {error}",
                                                  **RequestError(HTTPStatus.BAD_REQUEST, str(error)).body()})

    def _error(self, error: RequestError) -> None:
        self._answer(error.status, error.body())

    def _authorized(self) -> bool:
        key = self.server.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._error(RequestError(HTTPStatus.UNAUTHORIZED, "Missing or wrong API key.", code="invalid_api_key"))
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._answer(HTTPStatus.OK, self.server.models())
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._answer(HTTPStatus.OK, {"status": "ok"})
        else:
            self._error(RequestError(HTTPStatus.NOT_FOUND, f"No route {self.path}."))

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._authorized():
            return
        path = self.path.rstrip("/").removeprefix("/v1")
        if path in SYNC_ROUTES:
            self._sync(path, raw)
            return
        if path not in ("/completions", "/chat/completions"):
            self._error(RequestError(HTTPStatus.NOT_FOUND, f"No route {self.path}."))
            return
        try:
            try:
                body = json.loads(raw or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"The request body is not JSON: {error}.") from error
            try:  # JSON's \ud800 escapes decode to lone surrogates, which no tokenizer can encode
                json.dumps(body, ensure_ascii=False).encode()
            except UnicodeEncodeError as error:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"The request body holds text that is not valid Unicode "
                                                           f"(a lone surrogate, {error.reason}).") from error
            request = self.server.request(body, chat=path == "/chat/completions")
            choices, rid, created = self.server.complete(request)
        except RequestError as error:
            self._error(error)
            return
        except Exception as error:  # noqa: BLE001 (a 500 in OpenAI's shape; the server keeps serving)
            self._error(RequestError(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}"))
            return
        name = self.server.served_name
        if request.stream:
            self._events(stream_chunks(request, choices, rid, created, name))
        else:
            self._answer(HTTPStatus.OK, response_body(request, choices, rid, created, name))


def address_message(host: str, port: int, error: OSError) -> str:
    return (f"cannot listen on {host}:{port} ({error.strerror or error}): another server (a peer's rlgf serve?) may "
            "hold that port; pick another with --port, or --port 0 for a free one.")


def address_unavailable(host: str, port: int) -> str | None:
    """Why `rlgf serve` could not listen on host:port (bound the way the server binds), or None."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as error:
        return address_message(host, port, error)
    finally:
        probe.close()
    return None


def serve_main(argv: list[str]) -> int:
    from rlgf_pl.serving import __doc__ as doc

    parser = argparse.ArgumentParser(prog="rlgf serve", description=doc.split("\n\n")[0])
    parser.add_argument("model", help="hub id, local directory or zoo name of a causal or seq2seq LM")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--served-model-name", default=None, help="the name clients send as 'model' (default: MODEL)")
    parser.add_argument("--api-key-env", default=None,
                        help="environment variable holding the key clients must send (default: no key)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-batch-size", type=int, default=64, help="most requests generated together")
    parser.add_argument("--default-max-tokens", type=int, default=512,
                        help="a chat request's budget when it sets none and the model has no fixed context window "
                             "(otherwise the rest of the window)")
    args = parser.parse_args(argv)
    api_key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""
    if args.api_key_env and not api_key:
        parser.error(f"--api-key-env {args.api_key_env}: that environment variable is unset or empty.")
    unavailable = address_unavailable(args.host, args.port)  # before the model loads, which can take minutes
    if unavailable:
        parser.error(unavailable)
    policy = load_policy(args.model, "auto", args.dtype).to(args.device).eval().requires_grad_(False)
    engine = CompletionEngine(policy, args.max_batch_size, args.default_max_tokens)
    try:
        server = CompletionServer((args.host, args.port), engine, args.served_model_name or args.model,
                                  api_key or None)
    except OSError as error:  # taken while the model loaded
        parser.error(address_message(args.host, args.port, error))
    host, port = server.server_address[:2]
    print(f"rlgf serve: {args.model} as {server.served_name!r} at http://{host}:{port}/v1 (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
