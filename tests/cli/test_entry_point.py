"""The `amikeeper` console script: what it resolves to, what it offers, and how it finds the stack."""

from __future__ import annotations

from importlib.metadata import entry_points

import boto3
from click.testing import CliRunner

from amikeeper_cli.main import cli
from tests.cli.conftest import Operator, deploy
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.stack import MotoStack, create_stack, run_instances
from tests.sam_local import SamApp


def test_the_installed_console_script_is_the_object_the_tests_run() -> None:
    # Given the project installed by requirements-dev.txt (-e .)
    # When the `amikeeper` console script is looked up
    (script,) = entry_points(group="console_scripts", name="amikeeper")

    # Then it resolves to the very click group every other test invokes
    assert script.load() is cli


def test_help_offers_exactly_the_operator_commands_and_the_exit_codes() -> None:
    # When the operator asks for help
    result = CliRunner().invoke(cli, ["--help"])

    # Then the seven commands are listed (drills are not offered yet), with the exit codes
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:")[1].split("\n\n")[0]
    assert [line.split()[0] for line in commands.strip().splitlines()] == [
        "backup",
        "backups",
        "hold",
        "plan",
        "release",
        "restore",
        "status",
    ]
    assert "Exit codes: 0 done; 1" in result.stdout


def test_settings_come_from_the_stack_named_by_amikeeper_stack(aws: Ec2Fidelity, sam_app: SamApp) -> None:
    # Given a stack named "prod" with OptInTagKey=Keep, and no stack named "amikeeper"
    stack = create_stack(stack_name="prod", overrides={"OptInTagKey": "Keep"})
    deploy(stack, sam_app, stack_name="prod")
    instance = run_instances(stack.region, tags={"Keep": "true"})[0]
    operator = Operator(stack.region)

    # When the operator names it in AMIKEEPER_STACK, and when they do not
    named = operator.run("status", "--json", env={"AMIKEEPER_STACK": "prod"})
    default = operator.run("status")

    # Then the named stack's settings apply; without a name, the missing default stack is bad input
    assert named.exit_code == 0, named.output
    assert instance in named.stdout
    assert default.exit_code == 2
    assert default.stderr.startswith("amikeeper: error: no amikeeper stack 'amikeeper' in eu-west-1")
    assert default.stdout == ""


def test_an_unknown_profile_is_bad_input(deployed: MotoStack, operator: Operator) -> None:
    # When the operator names a profile their AWS config does not have
    result = operator.run("status", "--profile", "nosuch")

    # Then they are told in one line, exit code 2
    assert result.exit_code == 2
    assert result.stderr == "amikeeper: error: The config profile (nosuch) could not be found\n"


def test_a_stack_whose_configuration_cannot_be_parsed_fails_with_the_variable_named(
    deployed: MotoStack, operator: Operator
) -> None:
    # Given a deployed planner whose environment lost its work queue
    awslambda = boto3.client("lambda", region_name=deployed.region)
    planner = "amikeeper-planner"
    variables = awslambda.get_function_configuration(FunctionName=planner)["Environment"]["Variables"]
    del variables["AMIKEEPER_WORK_QUEUE_URL"]
    awslambda.update_function_configuration(FunctionName=planner, Environment={"Variables": variables})

    # When the operator runs any command
    result = operator.run("plan")

    # Then the functions' own parser refuses it, naming the variable, and the command fails with 1
    assert result.exit_code == 1
    assert result.stderr == (
        "amikeeper: error: stack amikeeper: amikeeper-planner has a configuration amikeeper cannot use: "
        "AMIKEEPER_WORK_QUEUE_URL: is missing or empty\n"
    )
