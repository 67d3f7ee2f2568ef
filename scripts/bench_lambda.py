"""A Lambda container in a fresh process, for what only a fresh process can measure.

Run as a script (``python scripts/bench_lambda.py MODE SPEC``), so that nothing but the standard
library is imported before the measurement starts. SPEC is a JSON file written by
scripts/bench_memory.py: the function's code and layer folders, its environment, and for ``replay``
the event and a folder of recorded HTTP answers.

- ``import``: how long importing the handler module takes (the cold start's init phase), and the
  process's RSS afterwards.
- ``replay``: import, then invoke the handler with the event while botocore is answered from the
  recording (no moto in this process: only what the Lambda itself would hold), and report the peak
  RSS of the process, which is what Lambda's "Max Memory Used" reports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import resource
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any


def _load(spec: dict[str, Any]) -> tuple[ModuleType, float]:
    os.environ.clear()
    os.environ.update(spec["environment"])
    sys.path[0:0] = [spec["code_dir"], *spec["layer_dirs"]]
    source = Path(spec["code_dir"]) / "app.py"
    started = time.perf_counter()
    module_spec = importlib.util.spec_from_file_location("app", source)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"cannot import {source}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["app"] = module
    module_spec.loader.exec_module(module)
    return module, time.perf_counter() - started


def _peak_rss_mb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process image; ru_maxrss would also count
    the parent's RSS at the time it spawned us, which is the whole benchmark with moto in it."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Replay:
    """Answers each attempt with the next recorded answer of the same operation."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._answers: dict[str, list[dict[str, Any]]] = {}
        for entry in json.loads((folder / "index.json").read_text()):
            self._answers.setdefault(entry["key"], []).append(entry)

    def __call__(self, event_name: str, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse, HTTPHeaders

        _before_send, service, operation = event_name.split(".", 2)
        key = f"{service}:{operation}"
        queued = self._answers.get(key)
        if not queued:
            raise RuntimeError(f"the recording has no (more) answers for {key}")
        entry = queued.pop(0)
        headers = HTTPHeaders()
        for name, value in entry["headers"].items():
            headers[name] = value
        body = (self._folder / entry["body"]).read_bytes()
        return AWSResponse(request.url, entry["status"], headers, _Raw(body))


class _Raw(io.BytesIO):
    def stream(self, **_: Any) -> Any:
        yield self.read()


class _Context:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.function_name = spec["function_name"]
        self.invoked_function_arn = spec["function_arn"]
        self.memory_limit_in_mb = str(spec["memory_mb"])
        self.aws_request_id = "replay"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "replay"
        self.function_version = "$LATEST"
        self._deadline = time.monotonic() + spec["budget_ms"] / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(mode: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if mode == "import":
        _, seconds = _load(spec)
        print(json.dumps({"import_s": seconds, "rss_mb": _peak_rss_mb()}))
        return
    import botocore.handlers

    botocore.handlers.BUILTIN_HANDLERS.append(("before-send", _Replay(Path(spec["recording"]))))
    module, seconds = _load(spec)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        module.handler(spec["event"], _Context(spec))
    print(
        json.dumps(
            {"import_s": seconds, "handler_s": time.perf_counter() - started, "rss_mb": _peak_rss_mb()}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
