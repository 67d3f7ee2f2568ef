"""The ``amikeeper`` command line: argument parsing and exit codes; each command's work is in commands/.

The console script (pyproject.toml, [project.scripts]) points at :data:`cli`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn

import click
from botocore.exceptions import BotoCoreError, ClientError

from amikeeper_cli.commands.backup import backup as queue_backup
from amikeeper_cli.commands.backups import backups as list_backups
from amikeeper_cli.commands.hold import hold as hold_image
from amikeeper_cli.commands.hold import release as release_image
from amikeeper_cli.commands.plan import plan as retention_plan
from amikeeper_cli.commands.restore import DEFAULT_TIMEOUT_SECONDS, MODES, Request
from amikeeper_cli.commands.restore import restore as restore_instance
from amikeeper_cli.commands.status import status as fleet_status
from amikeeper_cli.deployment import Deployment
from amikeeper_cli.errors import CliError, OperationFailed
from amikeeper_cli.relocate import Elsewhere
from amikeeper_cli.render import View, show

DEFAULT_STACK = "amikeeper"

EPILOG = """\b
Exit codes: 0 done; 1 an AWS call failed or a region could not be read
(the output then shows what could be), or a restore failed, timed out or
was declined; 2 bad input: unknown instance or AMI,
an AMI not made by this stack, no such stack, bad arguments. Nothing is
changed when the exit code is 2. See docs/cli.md."""


def _command(work: Callable[..., View], *, interactive: bool = False) -> Callable[..., None]:
    """Adds the options every command takes (after the command, as in the AWS CLI), connects to the
    stack, shows the View and exits with its code.

    Every failure ends as one line on stderr: CliError with its own code, an AWS failure with 1. An
    ``interactive`` command also gets ``as_json``: it prints and asks before it acts.
    """

    @click.option(
        "--stack",
        envvar="AMIKEEPER_STACK",
        default=DEFAULT_STACK,
        show_default=True,
        help="Name of the deployed amikeeper stack (env AMIKEEPER_STACK).",
    )
    @click.option(
        "--profile", default=None, help="AWS profile, as in the AWS CLI (else AWS_PROFILE, default)."
    )
    # AWS_REGION before AWS_DEFAULT_REGION (which boto3 reads by itself), as the AWS CLI v2 does.
    @click.option(
        "--region",
        envvar="AWS_REGION",
        default=None,
        help="Region the stack is deployed in (else AWS_REGION, AWS_DEFAULT_REGION, the profile's).",
    )
    @click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout, for scripts.")
    @functools.wraps(work)
    def run(stack: str, profile: str | None, region: str | None, as_json: bool, **arguments: Any) -> None:
        if interactive:
            arguments["as_json"] = as_json
        try:
            code = show(work(Deployment.connect(profile, region, stack), **arguments), as_json=as_json)
        except CliError as error:
            _fail(error)
        except (ClientError, BotoCoreError) as error:
            _fail(OperationFailed(f"{type(error).__name__}: {error}"))
        raise SystemExit(code)

    return run


def _interactive_command(work: Callable[..., View]) -> Callable[..., None]:
    return _command(work, interactive=True)


def _fail(error: CliError) -> NoReturn:
    click.echo(f"amikeeper: error: {error}", err=True)
    raise SystemExit(error.exit_code)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="amikeeper", prog_name="amikeeper")
def cli() -> None:
    """Operate an amikeeper stack with your own AWS credentials: see its backups, hold them, take one now,
    restore from one."""


@cli.command(epilog=EPILOG)
@_command
def status(deployment: Deployment) -> View:
    """Every opted-in instance: policy, schedule, newest backup and its age against the RPO."""
    return fleet_status(deployment)


@cli.command(epilog=EPILOG)
@click.argument("instance")
@_command
def backups(deployment: Deployment, instance: str) -> View:
    """INSTANCE's backups: slot, trigger, state, what retention does with each and why, hold, in use."""
    return list_backups(deployment, instance)


@cli.command(epilog=EPILOG)
@_command
def plan(deployment: Deployment) -> View:
    """Retention's dry run: exactly what the retention function would delete and keep now, and why."""
    return retention_plan(deployment)


@cli.command(epilog=EPILOG)
@click.argument("instance")
@_command
def backup(deployment: Deployment, instance: str) -> View:
    """Back INSTANCE up now (trigger manual), through the stack's work queue."""
    return queue_backup(deployment, instance)


@cli.command(epilog=EPILOG)
@click.argument("ami")
@_command
def hold(deployment: Deployment, ami: str) -> View:
    """Put AMI (a backup of this stack) on legal hold: retention keeps it until released."""
    return hold_image(deployment, ami)


@cli.command(epilog=EPILOG)
@click.argument("ami")
@_command
def release(deployment: Deployment, ami: str) -> View:
    """Release AMI's legal hold: retention's rules apply to it again."""
    return release_image(deployment, ami)


@cli.command(epilog=EPILOG)
@click.argument("instance")
@click.option("--backup", "image_id", metavar="AMI", help="This backup (of INSTANCE, by this stack).")
@click.option("--at", metavar="TIME", help="The newest backup at or before TIME (ISO-8601 with offset).")
@click.option("--mode", type=click.Choice(MODES), default="new-instance", show_default=True)
@click.option(
    "--from-copy",
    metavar="REGION",
    help="From the backup's disaster-recovery copy in REGION (--backup may name the backup or the copy); "
    "new-instance only, with --subnet and --security-group of REGION.",
)
@click.option("--subnet", "subnet_id", metavar="SUBNET_ID", help="With --from-copy: the subnet to launch in.")
@click.option(
    "--security-group",
    "security_group_ids",
    metavar="SG_ID",
    multiple=True,
    help="With --from-copy: a security group of the subnet's VPC (repeatable).",
)
@click.option("--instance-type", metavar="TYPE", help="With --from-copy: instead of the recorded type.")
@click.option(
    "--key-name", metavar="NAME", help="With --from-copy: a key pair of REGION, not the recorded one."
)
@click.option("--no-key", is_flag=True, help="With --from-copy: launch without a key pair.")
@click.option("--dry-run", is_flag=True, help="Show what would be done and ask EC2's DryRun; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until it is up, or return.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    help="Seconds to wait before giving up (exit 1).",
)
@_interactive_command
def restore(
    deployment: Deployment,
    instance: str,
    subnet_id: str | None,
    security_group_ids: tuple[str, ...],
    instance_type: str | None,
    key_name: str | None,
    no_key: bool,
    **options: Any,
) -> View:
    """Restore INSTANCE from its newest available backup (or --backup / --at): as a new instance with its
    recorded configuration, or by replacing the running instance's root volume in place; or, with
    --from-copy REGION, as a new instance from that backup's copy in REGION."""
    elsewhere = Elsewhere(subnet_id, tuple(security_group_ids), instance_type, key_name, no_key)
    return restore_instance(deployment, Request(instance_id=instance, elsewhere=elsewhere, **options))
