"""Shared fixtures: moto with real EC2 semantics, the stack's resources, and the template's functions."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import aws_xray_sdk.core  # noqa: F401 - opens its (idle) UDP emitter socket now, before pytest-socket blocks sockets
import pytest

from amikeeper import clients
from tests.fixtures.ec2_fidelity import Ec2Fidelity, aws, aws_credentials
from tests.fixtures.stack import MotoStack, create_stack
from tests.sam_local import ResolvedFunction, SamApp

__all__ = ["aws", "aws_credentials"]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    """Each test gets new boto3 clients, bound to its own moto backend."""
    clients.reset()
    yield
    clients.reset()


@pytest.fixture(autouse=True)
def log_to_this_tests_stdout() -> None:
    """Powertools sets the 'amikeeper' logger up once per process, on the sys.stdout of that moment;
    pytest swaps sys.stdout per test, so the handler must follow or it writes to a closed capture."""
    for handler in logging.getLogger("amikeeper").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stdout  # not setStream: it would flush the closed one


@pytest.fixture
def without_public_amis(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's 1,291 public AMIs and snapshots per region only slow fleet tests down (see Fleet)."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture(scope="session")
def sam_app() -> SamApp:
    return SamApp.load(ROOT / "template.yaml")


@pytest.fixture
def stack(aws: Ec2Fidelity) -> MotoStack:
    return create_stack()


@pytest.fixture
def functions(sam_app: SamApp, stack: MotoStack) -> dict[str, ResolvedFunction]:
    """The template's functions, resolved against the moto stack like `sam local invoke --env-vars`."""
    return stack.deploy(sam_app)
