"""Test-only callbacks, importable from YAML/CLI as `helpers.X` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json

from lightning.pytorch import Callback
from lightning.pytorch.strategies import FSDPStrategy

from rlgf_pl.rewards.base import Reward


class StopAfterEpochs(Callback):
    """Ends fit after `epochs` epochs, as if the job had been interrupted there (after its checkpoint)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class BrokenReward(Reward):
    """A reward that returns a bad value once it has been called `after` times (for error tests)."""

    def __init__(self, kind: str = "nan", after: int = 0) -> None:
        self.kind = kind
        self.after = after
        self.calls = 0

    def __call__(self, prompts, continuations, references):
        import torch

        self.calls += 1
        scores = torch.zeros(len(continuations))
        if self.calls <= self.after:
            return scores
        if self.kind == "nan":
            scores[0] = float("nan")
            return scores
        if self.kind == "huge":  # finite, but its square overflows float32
            return scores.fill_(1e30)
        return scores[:-1]  # wrong shape


class PoisonWeightsAt(Callback):
    """Writes a NaN into one learner weight after validation of epoch `epoch`, just before its checkpoint."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_end(self, trainer, pl_module) -> None:  # callbacks run before ModelCheckpoint saves
        if trainer.current_epoch == self.epoch:
            import torch

            with torch.no_grad():
                next(pl_module.policy.parameters()).view(-1)[0] = float("nan")


def leave_mark(path: str) -> str:
    """Writes a file; a pickle that calls it on load shows the load ran code from the file."""
    from pathlib import Path

    Path(path).write_text("unpickled")
    return path


class RunsCodeWhenUnpickled:
    """An object whose unpickling calls `leave_mark(path)`: the shape of a hostile checkpoint."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return leave_mark, (self.path,)


class KillProcessAt(Callback):
    """Kills process `pid` (SIGKILL) at the end of training epoch `epoch`: a guide server dying mid-run."""

    def __init__(self, pid: int, epoch: int = 0) -> None:
        self.pid = pid
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            import os
            import signal

            os.kill(self.pid, signal.SIGKILL)


class FaultProxy:
    """An HTTP proxy in front of a guide server that can turn faulty: 'ok' forwards every request, '429'
    answers Too Many Requests, 'garbage' answers 200 with a body that is not JSON. `fail_next` faults only that
    many requests, then forwards again. The newest proxy is `FaultProxy.current` (for `FaultsFrom`)."""

    current: FaultProxy | None = None

    def __init__(self, target: str, fault: str = "ok", fail_next: int | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        self.target, self.fault, self.fail_next = target.rstrip("/"), fault, fail_next
        self.faults = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                response = httpx.get(proxy.target + self.path.removeprefix("/v1"))
                self._send(response.status_code, response.content)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy.take_fault()
                if fault == "429":
                    self._send(429, b'{"error": {"message": "rate limited"}}')
                elif fault == "garbage":
                    self._send(200, b"<html>oops, a proxy error page</html>")
                else:
                    response = httpx.post(proxy.target + self.path.removeprefix("/v1"), content=body,
                                          headers={"Content-Type": "application/json"}, timeout=60)
                    self._send(response.status_code, response.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        FaultProxy.current = self

    def take_fault(self) -> str:
        with self._lock:
            if self.fault == "ok" or self.fail_next == 0:
                return "ok"
            if self.fail_next is not None:
                self.fail_next -= 1
            self.faults += 1
            return self.fault

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FaultsFrom(Callback):
    """From the end of training epoch `epoch` on, the current FaultProxy answers with `fault`."""

    def __init__(self, fault: str, epoch: int = 0) -> None:
        self.fault = fault
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            FaultProxy.current.fault = self.fault


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy on CPU ranks over gloo. Lightning refuses the exact FSDPStrategy class without a
    GPU, and torch's FSDP wants `device_id=cpu` said explicitly (with no device it looks for an accelerator);
    everything else (sharding, optimizer, checkpoints) is Lightning's own."""

    def _setup_model(self, model):
        import torch
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                        mixed_precision=self.mixed_precision_config,
                                        sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"),
                                        **self.kwargs)

    def lightning_module_state_dict(self):
        # Lightning's full state dict offloads to CPU, which on CPU ranks crashes in torch's FSDP1 clone hook
        # (a segmentation fault in _full_post_state_dict_hook); on CPU there is nothing to offload.
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
        with FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT, config):
            return self.model.state_dict()


def switch_at(epoch: int) -> str:
    """The CLI flag that sets a D2LOLS run's switch callback to `epoch` (replacing the config's)."""
    switch = {"class_path": "callbacks.D2LOLSSwitch", "init_args": {"switch_epoch": epoch}}
    return f"--callbacks={json.dumps([switch])}"
