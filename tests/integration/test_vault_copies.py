"""Copies to a vault account (SPEC §9), through the template's functions against moto: made by the vault's
role so the vault owns them, the source shared only while they run, keys checked first, retention in the
vault through the same role. The fixture's gap 14 gives CopyImage across accounts EC2's permission checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from amikeeper.model import COPIED_PREFIX, COPY_OF, RETAIN, SOURCE_ACCOUNT
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.end_state import tags_of, tick
from tests.fixtures.event_source import EventSource
from tests.fixtures.stack import ACCOUNT, MotoStack, create_stack, managed_images, run_instances
from tests.fixtures.throttling import Attempt, Forward, response, simulated_http
from tests.sam_local import ResolvedFunction, SamApp, load_event

ROOT = Path(__file__).resolve().parents[2]
HOME, VAULT_REGION = "eu-west-1", "eu-central-1"
VAULT = "222233334444"
VAULT_ROLE = f"arn:aws:iam::{VAULT}:role/amikeeper-vault-amikeeper"
DESTINATION = f"{VAULT}/{VAULT_REGION}"
DAY = datetime(2026, 11, 27, 3, 5, tzinfo=UTC)
VAULT_POLICY = {
    "vaulted": {
        "retain": "daily=7",
        "copies": [{"region": VAULT_REGION, "account": VAULT, "retain": "last=2"}],
    }
}
WITH_VAULT = {"VaultRoleArn": VAULT_ROLE, "VaultExternalId": "vault-external-id", "CopyRegions": VAULT_REGION}


def vault_session() -> boto3.Session:
    credentials = boto3.client("sts", region_name=HOME).assume_role(
        RoleArn=VAULT_ROLE, RoleSessionName="test", ExternalId="vault-external-id"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def vault_copies() -> dict[str, dict[str, Any]]:
    """The vault's own AMIs in its region: id -> the image as the vault sees it."""
    ec2 = vault_session().client("ec2", region_name=VAULT_REGION)
    return {image["ImageId"]: dict(image) for image in ec2.describe_images(Owners=["self"])["Images"]}


class World:
    def __init__(self, stack: MotoStack, functions: dict[str, ResolvedFunction]) -> None:
        self.stack, self.functions = stack, functions

    def back_up(self, when: datetime) -> list[str]:
        before = {image["ImageId"] for image in managed_images(HOME)}
        self.functions["PlannerFunction"].invoke(tick(when))
        EventSource(self.stack, self.functions["WorkerFunction"].invoke).drain()
        return sorted({image["ImageId"] for image in managed_images(HOME)} - before)

    def available(self, image_id: str) -> None:
        event = load_event(ROOT / "events" / "ami-state-available.json")
        event["id"] = f"state-change-of-{image_id}"
        event["region"] = HOME
        event["resources"] = [f"arn:aws:ec2:{HOME}::image/{image_id}"]
        event["detail"] = event["detail"] | {"ImageId": image_id, "State": "available"}
        self.functions["AmiStateFunction"].invoke(event)

    def copy(self, **options: Any) -> list[Any]:
        return self.stack.deliver_copies(self.functions["CopierFunction"].invoke, **options)

    def retention(self, when: datetime) -> dict[str, Any]:
        answer: dict[str, Any] = self.functions["RetentionFunction"].invoke(tick(when) | {"dry_run": False})
        return answer


def deploy(sam_app: SamApp, overrides: dict[str, str] | None = WITH_VAULT, policies: Any = None) -> World:
    stack = create_stack(policies=policies or VAULT_POLICY, overrides=overrides or {})
    return World(stack, stack.deploy(sam_app))


def shared_with(image_id: str) -> tuple[list[str], list[str]]:
    """Who may launch the source, and who may create volumes from its snapshots."""
    ec2 = boto3.client("ec2", region_name=HOME)
    launch = ec2.describe_image_attribute(ImageId=image_id, Attribute="launchPermission")["LaunchPermissions"]
    [image] = ec2.describe_images(ImageIds=[image_id])["Images"]
    volumes = [
        permission.get("UserId", "")
        for mapping in image["BlockDeviceMappings"]
        if "Ebs" in mapping
        for permission in ec2.describe_snapshot_attribute(
            SnapshotId=mapping["Ebs"]["SnapshotId"], Attribute="createVolumePermission"
        )["CreateVolumePermissions"]
    ]
    return [permission.get("UserId", "") for permission in launch], volumes


def source_tags(image_id: str) -> dict[str, str]:
    [image] = boto3.client("ec2", region_name=HOME).describe_images(ImageIds=[image_id])["Images"]
    return tags_of(image)


def test_a_vault_copy_is_owned_by_the_vault_and_the_source_is_shared_only_while_it_runs(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    world = deploy(sam_app)
    # Given a backup of an instance on the vaulted policy, whose copy EC2 keeps pending a while
    run_instances(HOME, tags={"Backup": "vaulted"}, data_volumes=1)
    [source] = world.back_up(DAY)
    world.available(source)
    aws.start_pending()
    # When the copier starts the copy
    world.copy(rounds=1, until_empty=False)
    # Then the vault owns the pending copy, tagged by CopyImage, and the source is shared with the vault
    [(copy_id, copy)] = vault_copies().items()
    assert copy["OwnerId"] == VAULT and copy["State"] == "pending"
    assert tags_of(copy)[COPY_OF] == source and tags_of(copy)[SOURCE_ACCOUNT] == ACCOUNT
    assert tags_of(copy)[RETAIN] == "last=2"
    assert shared_with(source) == ([VAULT], [VAULT, VAULT])
    # When EC2 completes it and the copier looks again
    aws.set_image_state(VAULT_REGION, copy_id, "available", account_id=VAULT)
    world.copy()
    # Then the source records the copy and is no longer shared with anyone; nobody was mailed
    assert source_tags(source)[COPIED_PREFIX + DESTINATION] == copy_id
    assert shared_with(source) == ([], [])
    assert world.stack.notifications() == []
    # And this account cannot see the vault's copy at all
    home_view = boto3.client("ec2", region_name=VAULT_REGION).describe_images(Owners=["self"])["Images"]
    assert home_view == []


def test_without_a_vault_role_a_vault_copy_fails_saying_what_to_set_up(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given a policy copying to a vault, and a stack deployed without VaultRoleArn
    world = deploy(sam_app, overrides={"CopyRegions": VAULT_REGION})
    run_instances(HOME, tags={"Backup": "vaulted"})
    [source] = world.back_up(DAY)
    # When the backup becomes available and the copier works
    world.available(source)
    world.copy()
    # Then one copy.failed says how to set the vault up; nothing was shared, nothing copied
    [note] = world.stack.notifications()
    assert note.event == "copy.failed"
    assert "VaultRoleArn" in note.document["reason"] and "vault/template.yaml" in note.document["reason"]
    assert shared_with(source) == ([], [])
    assert vault_copies() == {}


class DeniedAssumeRole:
    def __call__(self, attempt: Attempt, forward: Forward) -> Any:
        if attempt.key == "sts:AssumeRole":
            body = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not "
                "authorized to perform: sts:AssumeRole</Message></Error></ErrorResponse>"
            )
            return response(403, body, {"Content-Type": "text/xml"})
        return forward()


def test_a_vault_role_that_refuses_the_stack_gives_one_clear_copy_failed(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    world = deploy(sam_app)
    run_instances(HOME, tags={"Backup": "vaulted"})
    [source] = world.back_up(DAY)
    world.available(source)
    # When the vault role refuses to be assumed (a wrong external id, a trust policy naming another account)
    with simulated_http(DeniedAssumeRole()):
        world.copy()
    # Then one copy.failed names the role and the refusal
    [note] = world.stack.notifications()
    assert note.event == "copy.failed"
    assert f"cannot assume the vault role {VAULT_ROLE}" in note.document["reason"]
    assert "AccessDenied" in note.document["reason"]
    assert shared_with(source) == ([], [])


def encrypted_instance(kms_key_id: str | None) -> str:
    ec2 = boto3.client("ec2", region_name=HOME)
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    ebs: dict[str, Any] = {"VolumeSize": 20, "Encrypted": True} | (
        {"KmsKeyId": kms_key_id} if kms_key_id else {}
    )
    instance = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=[{"DeviceName": "/dev/sdf", "Ebs": ebs}],  # type: ignore[typeddict-item]
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Backup", "Value": "vaulted"}]}],
    )
    return str(instance["Instances"][0]["InstanceId"])


def customer_key(*, lets_vault_use_it: bool) -> str:
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Owner",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if lets_vault_use_it:
        statements.append(
            {
                "Sid": "AmikeeperVaultReadsSharedSnapshots",
                "Effect": "Allow",
                "Principal": {"AWS": VAULT_ROLE},
                "Action": [
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:CreateGrant",
                ],
                "Resource": "*",
            }
        )
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return str(boto3.client("kms", region_name=HOME).create_key(Policy=policy)["KeyMetadata"]["Arn"])


def test_a_source_under_the_aws_managed_key_is_never_shared_and_the_reason_is_named(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    world = deploy(sam_app)
    # Given an instance whose volume is encrypted with the account's AWS managed key (aws/ebs)
    encrypted_instance(None)
    [source] = world.back_up(DAY)
    world.available(source)
    # When the copier works
    world.copy()
    # Then one copy.failed names the snapshot, the AWS managed key and what to do; nothing shared or copied
    [note] = world.stack.notifications()
    reason = note.document["reason"]
    assert "AWS managed key" in reason and "aws/ebs" in reason and "customer-managed key" in reason
    assert shared_with(source) == ([], [])
    assert vault_copies() == {}


def test_a_source_key_whose_policy_does_not_name_the_vault_is_refused_before_sharing(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    world = deploy(sam_app)
    key = customer_key(lets_vault_use_it=False)
    encrypted_instance(key)
    [source] = world.back_up(DAY)
    world.available(source)
    world.copy()
    [note] = world.stack.notifications()
    assert f"the key policy of {key}" in note.document["reason"] and VAULT in note.document["reason"]
    assert shared_with(source) == ([], [])


def test_a_source_under_a_shared_customer_key_is_copied_and_re_encrypted_with_the_vaults_key(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    # Given a vault key in the vault's region, named by the policy, and a source under a key the vault may use
    vault_key = vault_session().client("kms", region_name=VAULT_REGION).create_key()["KeyMetadata"]["Arn"]
    policies = {"vaulted": {"copies": [{"region": VAULT_REGION, "account": VAULT, "kms_key": vault_key}]}}
    world = deploy(sam_app, policies=policies)
    encrypted_instance(customer_key(lets_vault_use_it=True))
    [source] = world.back_up(DAY)
    world.available(source)
    # When the copier works
    world.copy()
    # Then the vault's copy is available and each of its snapshots is encrypted with the vault's key
    [(copy_id, copy)] = vault_copies().items()
    assert copy["State"] == "available"
    snapshot_ids = [m["Ebs"]["SnapshotId"] for m in copy["BlockDeviceMappings"] if "Ebs" in m]
    snapshots = (
        vault_session().client("ec2", region_name=VAULT_REGION).describe_snapshots(SnapshotIds=snapshot_ids)
    )
    assert {(s["Encrypted"], s["KmsKeyId"]) for s in snapshots["Snapshots"]} == {(True, vault_key)}
    assert source_tags(source)[COPIED_PREFIX + DESTINATION] == copy_id
    assert world.stack.notifications() == []


def test_retention_in_the_vault_runs_through_the_role_with_the_copys_rules(
    aws: Ec2Fidelity, sam_app: SamApp
) -> None:
    world = deploy(sam_app)
    # Given four days of vault copies (kept last=2 in the vault; the source keeps daily=7)
    run_instances(HOME, tags={"Backup": "vaulted"})
    sources = []
    for day in range(4):
        [source] = world.back_up(DAY + timedelta(days=day))
        world.available(source)
        world.copy()
        sources.append(source)
    # When retention runs
    answer = world.retention(DAY + timedelta(days=3, hours=1))
    # Then the vault keeps the copies of the two newest backups, the source region all four
    vault = next(region for region in answer["regions"] if region["region"] == DESTINATION)
    assert vault["error"] is None
    assert {tags_of(image)[COPY_OF] for image in vault_copies().values()} == set(sources[2:])
    assert {image["ImageId"] for image in managed_images(HOME)} == set(sources)
