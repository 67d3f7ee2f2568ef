"""Demo chapter: disaster-recovery copies (SPEC §9). A database's nightly backups are copied to a second
region of the account and to a vault account, re-encrypted with the vault's own key; then retention runs
in each destination with that destination's rules, and the database is decommissioned: its copies stay.

The stack is updated first (the vault role from vault/template.yaml, its external id, the copy regions),
as an operator would with `sam deploy`. The nightly backups are the worker's, from work items queued the
way the planner queues them; from there on everything is the deployed path: each backup's AMI-state
event, the copier on its queue (delays treated as passed), retention and its deleter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3

from amikeeper.backups import build_work_item
from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.gateways.sqs import WorkQueue
from amikeeper.model import Stack, TagKeys
from amikeeper.policies import build_catalog
from scripts.demo_world import (
    ROOT,
    World,
    handler_output_discarded,
    heading,
    settle_creation_dates,
    show_notifications,
    table,
    tags_of,
)
from tests.sam_local import SamApp

FRANKFURT = "eu-central-1"
VAULT = "222233334444"
VAULT_ROLE = f"arn:aws:iam::{VAULT}:role/amikeeper-vault-amikeeper"
EXTERNAL_ID = "demo-external-id-2f6c9a"
NIGHTS = 5


def vault_session() -> boto3.Session:
    granted = boto3.client("sts", region_name=FRANKFURT).assume_role(
        RoleArn=VAULT_ROLE, RoleSessionName="demo-operator", ExternalId=EXTERNAL_ID
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=granted["AccessKeyId"],
        aws_secret_access_key=granted["SecretAccessKey"],
        aws_session_token=granted["SessionToken"],
    )


def disaster_recovery_copies(world: World, policies: Mapping[str, Any], day: datetime) -> None:
    heading("4. Disaster-recovery copies: a second region and a vault account, each with its own retention")
    vault_key = _vault_key()
    source_key = _source_key()
    dr = {
        "retain": "daily=7",
        "copies": [
            {"region": FRANKFURT, "retain": "daily=3"},
            {"region": FRANKFURT, "account": VAULT, "retain": "daily=14", "kms_key": vault_key},
        ],
    }
    world.stack.set_policies(dict(policies) | {"dr": dr})
    _update_stack(world)
    print(f"  vault account {VAULT}: role amikeeper-vault-amikeeper (vault/template.yaml), key {vault_key}")
    print(f"  stack updated: VaultRoleArn={VAULT_ROLE}, VaultExternalId=***, CopyRegions={FRANKFURT}")
    print(f"  named policy dr: {json.dumps(dr)}")
    db = _encrypted_instance(world, source_key)
    print(
        f"  db-2 ({db}) Backup=dr, its volume encrypted with {source_key} (whose key policy names the vault role)"
    )

    sources = []
    for night in range(NIGHTS, 0, -1):
        sources.append(_nightly_backup(world, db, (day - timedelta(days=night)).replace(hour=3, minute=0)))
    settle_creation_dates(world)
    with handler_output_discarded():
        for source in sources:
            world.functions["AmiStateFunction"].invoke(_available(world, source))
        world.stack.deliver_copies(world.functions["CopierFunction"].invoke)
    print(
        f"\n  {NIGHTS} nightly backups of db-2, each announced by its AMI-state event; the copier made the copies:"
    )
    _show_copies(world, sources, vault_key)
    shared = _shared_with(world, sources)
    print(f"  sources still shared with the vault after their copies completed: {shared or 'none'}")
    print("  notifications:")
    show_notifications(world.stack.notifications())

    when = day + timedelta(hours=7, minutes=10)
    with handler_output_discarded():
        answer = world.tick("RetentionFunction", "retention-tick", when)
    print(f"\n  retention at {when:%Y-%m-%d %H:%M}Z, every location in one run:")
    rows: list[list[object]] = [["location", "examined", "kept", "deleted"]]
    for region in answer["regions"]:
        rows.append([region["region"], region["examined"], region["kept"], region["queued"]])
    table(rows)
    _show_copies(world, sources, vault_key)

    boto3.client("ec2", region_name=world.region).terminate_instances(InstanceIds=[db])
    print(
        "\n  db-2 is decommissioned (terminated); its copies stay, each kept by its own destination's rules,"
    )
    print(
        "  the newest for OrphanGraceDays, and the vault's by a role that may delete this stack's copies only."
    )
    world.stack.notifications()


def _update_stack(world: World) -> None:
    world.stack.parameter_overrides |= {
        "VaultRoleArn": VAULT_ROLE,
        "VaultExternalId": EXTERNAL_ID,
        "CopyRegions": FRANKFURT,
    }
    world.functions = world.stack.deploy(SamApp.load(ROOT / "template.yaml"))


def _vault_key() -> str:
    kms = vault_session().client("kms", region_name=FRANKFURT)
    key = kms.create_key(Description="amikeeper vault copies")["KeyMetadata"]
    kms.create_alias(AliasName="alias/amikeeper-vault", TargetKeyId=key["KeyId"])
    return str(key["Arn"])


def _source_key() -> str:
    statements = [
        {
            "Sid": "Owner",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
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
        },
    ]
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return str(boto3.client("kms", region_name="eu-west-1").create_key(Policy=policy)["KeyMetadata"]["Arn"])


def _encrypted_instance(world: World, key: str) -> str:
    ec2 = boto3.client("ec2", region_name=world.region)
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    launched = ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        BlockDeviceMappings=[
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 50, "Encrypted": True, "KmsKeyId": key}}
        ],
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": "db-2"}, {"Key": "Backup", "Value": "dr"}],
            }
        ],
    )
    return str(launched["Instances"][0]["InstanceId"])


def _nightly_backup(world: World, instance_id: str, slot: datetime) -> str:
    """The work item the planner would queue for db-2's slot, made by the deployed worker."""
    settings = world.stack.parameter_overrides
    gateway = Ec2Gateway(boto3.client("ec2", region_name=world.region))
    instance = gateway.instance(instance_id)
    assert instance is not None
    policies = boto3.client("ssm", region_name=world.region).get_parameter(
        Name=world.stack.policies_parameter
    )
    catalog = build_catalog(
        "daily@03:00", "daily=7 weekly=4 monthly=6", ZoneInfo("UTC"), policies["Parameter"]["Value"]
    )
    policy = catalog.named["dr"]
    item = build_work_item(
        instance,
        policy,
        region=world.region,
        stack=Stack(settings["AWS::StackName"], TagKeys("Backup")),
        trigger="schedule",
        slot=slot,
    )
    before = {image["ImageId"] for image in world.images()}
    WorkQueue(boto3.client("sqs", region_name=world.region), world.stack.work_queue_url).send([item])
    with handler_output_discarded():
        world.drain_work_queue()
    [made] = {image["ImageId"] for image in world.images()} - before
    return str(made)


def _available(world: World, image_id: str) -> dict[str, Any]:
    return world.event(
        "ami-state-available",
        id=f"demo-{image_id}",
        region=world.region,
        resources=[f"arn:aws:ec2:{world.region}::image/{image_id}"],
        detail=world.event("ami-state-available")["detail"] | {"ImageId": image_id, "State": "available"},
    )


def _show_copies(world: World, sources: Sequence[str], vault_key: str) -> None:
    here = boto3.client("ec2", region_name=FRANKFURT)
    vault = vault_session().client("ec2", region_name=FRANKFURT)
    rows: list[list[object]] = [
        ["backup (eu-west-1)", "slot", f"copy in {FRANKFURT}", "copy in the vault", "vault copy's key"]
    ]
    frankfurt = {
        tags_of(i).get("amikeeper:copy-of"): i for i in here.describe_images(Owners=["self"])["Images"]
    }
    vaulted = {
        tags_of(i).get("amikeeper:copy-of"): i for i in vault.describe_images(Owners=["self"])["Images"]
    }
    slots = {image["ImageId"]: tags_of(image)["amikeeper:slot"] for image in world.images()}
    for source in sources:
        in_vault = vaulted.get(source)
        key = "-"
        if in_vault is not None:
            snapshot = next(m["Ebs"] for m in in_vault["BlockDeviceMappings"] if "Ebs" in m)
            key = (
                "the vault's (alias/amikeeper-vault)"
                if snapshot.get("KmsKeyId") == vault_key
                else str(snapshot.get("KmsKeyId"))
            )
        rows.append(
            [
                source,
                slots.get(source, "(gone)"),
                frankfurt[source]["ImageId"] if source in frankfurt else "-",
                in_vault["ImageId"] if in_vault is not None else "-",
                key,
            ]
        )
    table(rows)


def _shared_with(world: World, sources: Sequence[str]) -> list[str]:
    ec2 = boto3.client("ec2", region_name=world.region)
    shared = []
    for source in sources:
        permissions = ec2.describe_image_attribute(ImageId=source, Attribute="launchPermission")[
            "LaunchPermissions"
        ]
        if permissions:
            shared.append(source)
    return shared
