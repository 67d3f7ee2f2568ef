"""Cold starts and peak memory, measured in fresh processes (scripts/bench_lambda.py).

In the benchmark's own process moto holds the whole simulated estate, so its RSS says nothing about
what a Lambda needs. Instead, :class:`Recorder` keeps the HTTP answers one invocation received, and
:func:`replay_peak` runs that invocation again in a fresh process answered from the recording: its
peak RSS is the function's memory need (what Lambda reports as Max Memory Used, less the runtime's
own few MiB). :func:`cold_import` times the import of a handler module in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import MockRawResponse

from tests.fixtures.throttling import Attempt, Forward
from tests.sam_local import ResolvedFunction

SCRIPT = Path(__file__).resolve().parent / "bench_lambda.py"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@dataclass
class Recorder:
    """While ``recording`` is set, keeps every answer botocore receives, bodies in files."""

    folder: Path
    recording: bool = False
    entries: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, attempt: Attempt, forward: Forward) -> AWSResponse:
        answer = forward()
        if self.recording:
            body = answer.content
            name = f"{len(self.entries):06d}.bin"
            (self.folder / name).write_bytes(body)
            # .content has read the raw stream: a streaming output (Lambda's Payload) reads it again.
            answer.raw = MockRawResponse(body)
            self.entries.append(
                {
                    "key": attempt.key,
                    "status": answer.status_code,
                    "headers": dict(answer.headers),
                    "body": name,
                }
            )
        return answer

    @classmethod
    def in_temporary_folder(cls) -> Recorder:
        return cls(Path(tempfile.mkdtemp(prefix="amikeeper-bench-")))

    def save(self) -> Path:
        (self.folder / "index.json").write_text(json.dumps(self.entries))
        return self.folder


@dataclass(frozen=True)
class Measured:
    import_s: float
    rss_mb: float
    handler_s: float = 0.0


def _lambda_environment(function: ResolvedFunction, *, sam_local: bool) -> dict[str, str]:
    environment = function.runtime_environment() | FAKE_CREDENTIALS
    if not sam_local:
        # As deployed: Powertools' tracer is on (SAM local switches it off).
        environment.pop("AWS_SAM_LOCAL", None)
    return environment


def _run(mode: str, spec: dict[str, Any]) -> Measured:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), mode, handle.name], capture_output=True, text=True, check=False
    )
    Path(handle.name).unlink(missing_ok=True)
    if completed.returncode != 0:
        raise RuntimeError(f"bench_lambda {mode} failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return Measured(result["import_s"], result["rss_mb"], result.get("handler_s", 0.0))


def _spec(function: ResolvedFunction, *, sam_local: bool) -> dict[str, Any]:
    return {
        "code_dir": str(function.code_dir),
        "layer_dirs": [str(directory) for directory in function.layer_dirs],
        "environment": _lambda_environment(function, sam_local=sam_local),
        "function_name": function.function_name,
        "function_arn": f"arn:aws:lambda:{function.region}:{function.account_id}:function:{function.function_name}",
        "memory_mb": function.memory_mb,
        "budget_ms": function.timeout_s * 1000,
    }


def cold_import(function: ResolvedFunction, repeats: int = 3) -> Measured:
    """Median time to import the handler module in a fresh process, and the RSS after it."""
    runs = [_run("import", _spec(function, sam_local=False)) for _ in range(repeats)]
    return Measured(median(run.import_s for run in runs), median(run.rss_mb for run in runs))


def replay_peak(function: ResolvedFunction, event: dict[str, Any], recording: Path) -> Measured:
    """Peak RSS of a fresh process that imports the handler and replays the recorded invocation."""
    spec = _spec(function, sam_local=True) | {"event": event, "recording": str(recording)}
    return _run("replay", spec)
