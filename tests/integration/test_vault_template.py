"""vault/template.yaml, the role and Recycle Bin rules deployed in the vault account (docs/vault.md): cfn-lint
accepts it, its IAM is the contract the source stack relies on, and it deploys."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import cfnlint.api
import pytest
from moto import mock_aws

from tests.fixtures.ec2_fidelity import (
    SHARED_KEY_ACTIONS,
    aws_credentials,  # noqa: F401 - pytest fixture, used by name
)
from tests.sam_local import SamApp

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "vault" / "template.yaml"
APP = SamApp.load(TEMPLATE)
SOURCE_ACCOUNT = "111122223333"
STACK = "amikeeper-prod"
REGIONS = ["eu-west-1", "eu-central-1"]
PARAMETERS: dict[str, str | int] = {
    "SourceAccountId": SOURCE_ACCOUNT,
    "SourceStackName": STACK,
    "ExternalId": "a-long-external-id-0123",
    "DestinationRegions": ",".join(REGIONS),
}
VAULT_KEY = "arn:aws:kms:eu-west-1:222233334444:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DELETE_ACTIONS = {"ec2:DeregisterImage", "ec2:DeleteSnapshot"}
NO_VALUE = object()


def resolved(node: Any, parameters: dict[str, str | int]) -> Any:
    """A template value as CloudFormation would deploy it: conditions decided, AWS::NoValue dropped."""
    if isinstance(node, dict):
        if node == {"Ref": "AWS::NoValue"}:
            return NO_VALUE
        if node.get("Ref") in APP.template["Resources"]:  # known once deployed: kept as written
            return node
        if set(node) == {"Fn::If"}:
            name, when_true, when_false = node["Fn::If"]
            chosen = when_true if APP.evaluate({"Condition": name}, parameters) else when_false
            return resolved(chosen, parameters)
        if len(node) == 1 and (next(iter(node)).startswith("Fn::") or "Ref" in node):
            return APP.evaluate(node, parameters)
        pairs = {key: resolved(value, parameters) for key, value in node.items()}
        return {key: value for key, value in pairs.items() if value is not NO_VALUE}
    if isinstance(node, list):
        return [value for value in (resolved(item, parameters) for item in node) if value is not NO_VALUE]
    return node


def deployed_resources(**overrides: str | int) -> dict[str, Any]:
    """The resources CloudFormation creates with these parameters, their properties resolved."""
    parameters = {**PARAMETERS, **overrides}
    return {
        logical_id: {**resource, "Properties": resolved(resource.get("Properties", {}), parameters)}
        for logical_id, resource in APP.template["Resources"].items()
        if "Condition" not in resource or APP.evaluate({"Condition": resource["Condition"]}, parameters)
    }


def role_statements(**overrides: str | int) -> list[dict[str, Any]]:
    """Every statement the vault role is given: its inline policy and the policies attached to it."""
    resources = deployed_resources(**overrides)
    role = resources["VaultRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy":
            assert resource["Properties"]["Roles"] == [{"Ref": "VaultRole"}]
            statements += resource["Properties"]["PolicyDocument"]["Statement"]
    return statements


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_cfn_lint_finds_no_error_or_warning() -> None:
    # Given the template / When cfn-lint checks it / Then it finds nothing
    matches = cfnlint.api.lint(TEMPLATE.read_text(), regions=REGIONS)
    assert [str(match) for match in matches] == []


def test_role_is_trusted_by_the_source_account_only_with_the_external_id() -> None:
    # Given the role as deployed
    role = deployed_resources()["VaultRole"]["Properties"]

    # Then its name is predictable from the source stack, and the one trust statement names the source
    # account and requires the external id
    assert role["RoleName"] == f"amikeeper-vault-{STACK}"
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Sid": "SourceStackOnly",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": PARAMETERS["ExternalId"]}},
        }
    ]
    assert APP.template["Parameters"]["ExternalId"]["NoEcho"] is True


@pytest.mark.parametrize("copy_keys", ["", VAULT_KEY], ids=["default-keys", "vault-key"])
def test_every_action_is_named_and_the_set_is_exactly_what_copies_need(copy_keys: str) -> None:
    # Given every statement of the role, with and without vault keys
    statements = role_statements(CopyKeyArns=copy_keys)

    # Then each one allows named actions only
    assert all(statement["Effect"] == "Allow" for statement in statements)
    assert [a for s in statements for a in actions(s) if "*" in a] == []
    # And the whole set is exactly what copying, tracking and retention need
    expected = {
        "ec2:CopyImage",
        "ec2:CreateTags",
        "ec2:DescribeImages",
        "ec2:DescribeSnapshots",
        "ec2:DescribeImageAttribute",
        # what in the vault uses a copy (retention never deletes one in use)
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeImageReferences",
        "autoscaling:DescribeLaunchConfigurations",
        "ec2:DeregisterImage",
        "ec2:DeleteSnapshot",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:ReEncryptFrom",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:CreateGrant",
    }
    if copy_keys:
        expected |= {"kms:Encrypt", "kms:ReEncryptTo", "kms:GenerateDataKey"}
    assert {a for s in statements for a in actions(s)} == expected


def test_tags_can_only_be_written_by_copy_image_and_must_mark_the_copy_as_this_stacks() -> None:
    # Given the statements that allow CreateTags
    tagging = [s for s in role_statements() if "ec2:CreateTags" in actions(s)]

    # Then one requires the CopyImage create action and the stack's managed-by tag
    assert len(tagging) == 2
    [copying] = [s for s in tagging if "ec2:CreateAction" in s["Condition"]["StringEquals"]]
    assert actions(copying) == ["ec2:CreateTags"]
    assert copying["Condition"]["StringEquals"]["ec2:CreateAction"] == "CopyImage"
    assert copying["Condition"]["StringEquals"]["aws:RequestTag/amikeeper:managed-by"] == STACK
    # And the other writes retention's gone-since key only, on images already tagged as this stack's
    [marking] = [s for s in tagging if s is not copying]
    assert marking["Resource"] == "arn:aws:ec2:*::image/*"
    assert marking["Condition"]["StringEquals"]["aws:ResourceTag/amikeeper:managed-by"] == STACK
    assert marking["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": ["amikeeper:instance-gone-since"]
    }
    assert marking["Condition"]["Null"] == {"aws:TagKeys": "false"}


def test_deletions_are_allowed_only_on_resources_tagged_as_this_stacks() -> None:
    # Given the statements that allow a deletion
    deleting = [s for s in role_statements(CopyKeyArns=VAULT_KEY) if DELETE_ACTIONS & set(actions(s))]

    # Then one statement holds both, only on images and snapshots tagged with the source stack's name
    assert len(deleting) == 1
    assert set(actions(deleting[0])) == DELETE_ACTIONS
    assert deleting[0]["Resource"] == ["arn:aws:ec2:*::image/*", "arn:aws:ec2:*::snapshot/*"]
    assert deleting[0]["Condition"]["StringEquals"]["aws:ResourceTag/amikeeper:managed-by"] == STACK
    # And the role can change no tag or attribute that would bring another resource under that condition
    every_action = {a for s in role_statements(CopyKeyArns=VAULT_KEY) for a in actions(s)}
    assert not every_action & {"ec2:DeleteTags", "ec2:ModifyImageAttribute", "ec2:ModifySnapshotAttribute"}


def test_every_ec2_statement_is_limited_to_the_destination_regions() -> None:
    # Given the EC2 statements / Then each one holds the requested-region condition with the regions given
    ec2 = [s for s in role_statements() if any(a.startswith("ec2:") for a in actions(s))]
    assert len(ec2) == 6
    assert all(s["Condition"]["StringEquals"]["aws:RequestedRegion"] == REGIONS for s in ec2)


def test_kms_use_is_limited_to_ec2_and_the_named_keys() -> None:
    # Given the KMS statements, with a vault key for the copies
    kms = [s for s in role_statements(CopyKeyArns=VAULT_KEY) if any(a.startswith("kms:") for a in actions(s))]
    source_keys = f"arn:aws:kms:*:{SOURCE_ACCOUNT}:key/*"

    # Then the source account's keys are used only through EC2, the vault's keys are named one by one,
    # and every grant is for an AWS resource (EC2) only
    for statement in kms:
        assert statement["Resource"] in (source_keys, [VAULT_KEY])
        if statement["Resource"] == source_keys and actions(statement) != ["kms:CreateGrant"]:
            assert statement["Condition"] == {"StringLike": {"kms:ViaService": "ec2.*.amazonaws.com"}}
        if "kms:CreateGrant" in actions(statement):
            assert actions(statement) == ["kms:CreateGrant"]
            assert statement["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    # And without vault keys, no statement names this account's keys at all
    assert all(s["Resource"] == source_keys for s in role_statements() if actions(s)[0].startswith("kms:"))


@pytest.mark.parametrize(
    ("days", "lock", "rules", "locked"),
    [
        (0, "false", False, False),
        (0, "true", False, False),
        (30, "false", True, False),
        (30, "true", True, True),
    ],
    ids=["no-rule", "lock-without-rule", "rule", "locked-rule"],
)
def test_recycle_bin_rules_exist_only_with_a_retention_and_are_locked_only_when_asked(
    days: int, lock: str, rules: bool, locked: bool
) -> None:
    # Given the template deployed with this retention and lock setting
    resources = deployed_resources(
        RecycleBinRetentionDays=days, LockRecycleBin=lock, RecycleBinUnlockDelayDays=10
    )
    recycle_bin = {
        r["Properties"]["ResourceType"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Rbin::Rule"
    }

    # Then the image and snapshot rules exist only with a retention, keep only this stack's copies for that
    # many days, and carry a lock only when asked
    assert set(recycle_bin) == ({"EC2_IMAGE", "EBS_SNAPSHOT"} if rules else set())
    for rule in recycle_bin.values():
        assert rule["ResourceTags"] == [{"ResourceTagKey": "amikeeper:managed-by", "ResourceTagValue": STACK}]
        assert rule["RetentionPeriod"] == {"RetentionPeriodUnit": "DAYS", "RetentionPeriodValue": str(days)}
        if locked:
            assert rule["LockConfiguration"] == {"UnlockDelayUnit": "DAYS", "UnlockDelayValue": "10"}
        else:
            assert "LockConfiguration" not in rule


def test_a_second_region_gets_the_rules_without_a_second_role() -> None:
    # Given the template deployed again in another destination region, without the (global) role
    resources = deployed_resources(CreateRole="false", RecycleBinRetentionDays=30)

    # Then only the Recycle Bin rules are made, and there is no RoleArn output to clash with the first
    assert {r["Type"] for r in resources.values()} == {"AWS::Rbin::Rule"}
    assert APP.template["Outputs"]["RoleArn"]["Condition"] == "MakeRole"


# --- Deployed into moto's CloudFormation (which has no AWS::Rbin::Rule, so without a retention) ----------
@pytest.fixture
def vault_account(aws_credentials: None) -> Iterator[None]:  # noqa: F811
    with mock_aws():
        yield


def test_deployed_role_has_its_name_trust_and_output(vault_account: None) -> None:
    # Given the template deployed in the vault account with a vault key
    cloudformation = boto3.client("cloudformation", region_name=REGIONS[0])
    parameters = {**PARAMETERS, "CopyKeyArns": VAULT_KEY}
    cloudformation.create_stack(
        StackName="amikeeper-vault",
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )

    # When the stack is read back
    stack = cloudformation.describe_stacks(StackName="amikeeper-vault")["Stacks"][0]

    # Then it is complete, its RoleArn output names the predictable role, which trusts only the source
    # account with the external id and holds the copy policy
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    role_name = f"amikeeper-vault-{STACK}"
    assert outputs == {"RoleArn": f"arn:aws:iam::123456789012:role/{role_name}"}
    iam = boto3.client("iam", region_name=REGIONS[0])
    role = iam.get_role(RoleName=role_name)["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert [s["Principal"] for s in trust["Statement"]] == [{"AWS": f"arn:aws:iam::{SOURCE_ACCOUNT}:root"}]
    assert trust["Statement"][0]["Condition"] == {
        "StringEquals": {"sts:ExternalId": PARAMETERS["ExternalId"]}
    }
    assert "copy-and-retain" in iam.list_role_policies(RoleName=role_name)["PolicyNames"]


# --- docs/vault.md says what the template and the fidelity fixture do -------------------------------------
DOC = ROOT / "docs" / "vault.md"


def test_documented_deploy_command_names_only_parameters_of_the_template() -> None:
    # Given the deploy command of docs/vault.md
    command = DOC.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    overrides = re.findall(r"\b([A-Z][A-Za-z]+)=", command)

    # Then every override it gives is a parameter, and every parameter without a default is given
    parameters = APP.template["Parameters"]
    assert set(overrides) <= set(parameters)
    assert {name for name, p in parameters.items() if "Default" not in p} <= set(overrides)


def test_documented_source_key_statements_allow_what_a_vault_copy_needs() -> None:
    # Given the key-policy statements docs/vault.md tells the source account to add
    block = DOC.read_text().split("```json\n", 1)[1].split("```", 1)[0]
    statements = json.loads(f"[{block}]")

    # Then they name only the vault role, cover every action the fidelity fixture (after the EBS user
    # guide) requires of a shared key, and let the role create grants for AWS resources only
    assert {s["Principal"]["AWS"] for s in statements} == {
        "arn:aws:iam::<vault-account>:role/amikeeper-vault-<SourceStackName>"
    }
    allowed = [a for s in statements for a in actions(s)]
    assert all(any(fnmatchcase(needed, pattern) for pattern in allowed) for needed in SHARED_KEY_ACTIONS)
    grants = [s for s in statements if "kms:CreateGrant" in actions(s)]
    assert [s["Condition"] for s in grants] == [{"Bool": {"kms:GrantIsForAWSResource": "true"}}]
