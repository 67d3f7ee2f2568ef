"""cli/iam-policy.json against what the CLI really calls: every command's happy path runs under the call
counter, and each `service:Operation` it made must be allowed by a statement of the file; the file has no
`*` action, no write on every resource without a condition, and no action the CLI does not need."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from amikeeper_cli import wait
from tests.cli.conftest import FRANKFURT, Operator, configured_instance, network
from tests.fixtures.call_counter import counting
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import MotoStack, make_backup, make_copy

POLICY = Path(__file__).resolve().parents[2] / "cli" / "iam-policy.json"
# botocore's service ids (as the call counter names them) that differ from IAM's action prefixes.
IAM_PREFIX = {"auto-scaling": "autoscaling"}
# Operations IAM authorizes under another action's name.
IAM_ACTION = {"sqs:SendMessageBatch": "sqs:SendMessage"}
# Actions IAM checks without an API call of their own: passing the instance profile's role at launch.
AUTHORIZATION_ONLY = frozenset({"iam:PassRole"})
READ_PREFIXES = ("Describe", "Get", "List")


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = document["Statement"]
    return [found] if isinstance(found, Mapping) else list(found)


def listed(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def iam_action(called: str) -> str:
    service, operation = called.split(":", 1)
    action = f"{IAM_PREFIX.get(service, service)}:{operation}"
    return IAM_ACTION.get(action, action)


def allows(statement: Mapping[str, Any], action: str) -> bool:
    """IAM matches actions case-insensitively, with * and ? wildcards."""
    return statement["Effect"] == "Allow" and any(
        fnmatchcase(action.lower(), pattern.lower()) for pattern in listed(statement["Action"])
    )


def is_write(action: str) -> bool:
    return not action.split(":", 1)[1].startswith(READ_PREFIXES)


def called_by_every_command(operator: Operator, region: str, aws: Ec2Fidelity) -> set[str]:
    """Each command's happy path, as the CLI tests run them; the operations they made."""
    instance = configured_instance(region, {"Name": "web-1", "Backup": "true"}, data_volumes=1).instance_id
    ami = make_backup(region, instance, "2026-11-29T03:00:00Z")
    make_copy(region, ami, FRANKFURT)
    from_copy = ("restore", instance, "--from-copy", FRANKFURT, *network(FRANKFURT).options())
    runs: list[tuple[str, ...]] = [
        ("status",),
        ("backups", instance),
        ("plan",),
        ("backup", instance),
        ("hold", ami),
        ("release", ami),
        ("restore", instance, "--mode", "replace-root", "--dry-run"),
        ("restore", instance, "--mode", "replace-root", "--yes"),
        ("restore", instance, "--dry-run"),
        ("restore", instance, "--yes"),
        (*from_copy, "--dry-run"),
        (*from_copy, "--yes"),
    ]
    with counting() as counter:
        for args in runs:
            result = operator.run(*args)
            assert result.exit_code == 0, (args, result.output)
    return set(counter.tally().calls)


@pytest.fixture
def finishing_clock(monkeypatch: pytest.MonkeyPatch, aws: Ec2Fidelity, deployed: MotoStack) -> None:
    """Waits do not sleep; EC2 finishes a replace-root-volume task while the command waits."""

    def sleep(_: float) -> None:
        aws.finish_replace_root_volume_tasks(deployed.region, "succeeded")

    monkeypatch.setattr(wait, "CLOCK", wait.Clock(sleep=sleep, monotonic=lambda: 0.0))


@pytest.mark.usefixtures("finishing_clock")
def test_the_policy_allows_every_call_of_every_command_and_nothing_it_does_not_need(
    deployed: MotoStack, operator: Operator, aws: Ec2Fidelity
) -> None:
    # Given the policy file
    policy = statements(json.loads(POLICY.read_text()))
    # When every command runs its happy path (restore in both modes and from a copy, dry run and real)
    called = {iam_action(key) for key in called_by_every_command(operator, deployed.region, aws)}
    # Then every call is allowed by some statement
    denied = sorted(action for action in called if not any(allows(s, action) for s in policy))
    assert denied == [], f"cli/iam-policy.json does not allow {denied}"
    # And the writes the tests rely on were made (the run covered them)
    assert {
        "ec2:CreateTags",
        "ec2:DeleteTags",
        "ec2:RunInstances",
        "ec2:CreateReplaceRootVolumeTask",
    } <= called
    assert "sqs:SendMessage" in called
    # And every action the file names without a wildcard is one the CLI calls (or IAM checks for it)
    named = {a.lower() for s in policy for a in listed(s["Action"]) if "*" not in a and "?" not in a}
    needed = {a.lower() for a in called | AUTHORIZATION_ONLY}
    unused = sorted(named - needed)
    assert unused == [], f"cli/iam-policy.json allows {unused}, which no command calls"


def test_the_policy_has_no_star_action_and_no_unscoped_write() -> None:
    for statement in statements(json.loads(POLICY.read_text())):
        actions = listed(statement["Action"])
        assert (
            statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        )
        # No `*` nor `service:*`: a wildcard only completes a read (ec2:Describe*)
        for action in actions:
            operation = action.split(":", 1)[1] if ":" in action else action
            assert "*" not in operation or operation.startswith(READ_PREFIXES), action
        # A write names its resources, or is bound by a condition
        if any(is_write(action) for action in actions):
            resources = listed(statement["Resource"])
            assert "*" not in resources, statement["Sid"]
