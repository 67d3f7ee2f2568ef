"""`sam local invoke <Function> -e events/<file>.json` for every function and every one of its events.

Docker is not available here, so tests/sam_local.py does what SAM CLI does: resolve Handler, CodeUri,
layers and environment from template.yaml, import the handler from its folder with the layer on the
path, and invoke it. A wrong handler path, a module missing from the layer or an environment variable
the code needs but the template does not set fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.stack import MotoStack
from tests.sam_local import ResolvedFunction, SamApp

ROOT = Path(__file__).resolve().parents[2]
APP = SamApp.load(ROOT / "template.yaml")
CASES = [(fid, path) for fid in APP.function_ids() for path in APP.events_for(fid)]


def test_every_function_has_at_least_one_event_file() -> None:
    assert {fid for fid, _ in CASES} == set(APP.function_ids())


def test_every_event_file_belongs_to_a_function() -> None:
    assert {path for _, path in CASES} == set((ROOT / "events").glob("*.json"))


@pytest.mark.parametrize(("function_id", "event_path"), CASES, ids=[f"{f}:{p.name}" for f, p in CASES])
def test_handler_answers_its_event_like_sam_local_invoke(
    function_id: str, event_path: Path, functions: dict[str, ResolvedFunction], stack: MotoStack
) -> None:
    # Given the function resolved from the template and one of its events/ files
    event = json.loads(event_path.read_text())
    # When it is invoked as `sam local invoke` would (a cold start: the handler module is imported fresh)
    result = functions[function_id].invoke(event, fresh=True)
    # Then it answers with JSON (the harness round-trips it) and never raises
    json.dumps(result)
    if function_id == "WorkerFunction":
        # The sample work items name instances this account does not have: gone is not a failure.
        assert result == {"batchItemFailures": []}
