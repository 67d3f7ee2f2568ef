"""Where a disaster-recovery copy launches, in a region other than its backup's.

The subnet and security groups recorded on a backup belong to its own region's VPC, so the operator names
the destination's; the instance type, profile (IAM is global), key pair, EBS optimization and tags stay as
recorded unless overridden. Key pairs are regional: the recorded one must exist in the destination under
the same name (imported there beforehand), or the operator names another (``--key-name``) or none
(``--no-key``); it is never dropped silently, since an instance without its key may be unreachable.
Everything is checked in the destination before anything is launched.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from amikeeper.gateways.ec2 import Ec2Gateway
from amikeeper.model import (
    LAUNCH_KEY,
    LAUNCH_SECURITY_GROUPS,
    LAUNCH_SUBNET,
    LAUNCH_TYPE,
    LaunchConfig,
    Subnet,
)
from amikeeper_cli.errors import BadInput


@dataclass(frozen=True)
class Elsewhere:
    """What the operator gives for a launch outside the backup's region."""

    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    instance_type: str | None = None
    key_name: str | None = None
    no_key: bool = False

    @property
    def given(self) -> bool:
        return bool(
            self.subnet_id or self.security_group_ids or self.instance_type or self.key_name or self.no_key
        )

    @property
    def covered(self) -> frozenset[str]:
        """The launch tags a backup need not record, since the operator gives their values."""
        covered = {LAUNCH_SUBNET, LAUNCH_SECURITY_GROUPS}
        if self.instance_type:
            covered.add(LAUNCH_TYPE)
        if self.key_name or self.no_key:
            covered.add(LAUNCH_KEY)
        return frozenset(covered)


@dataclass(frozen=True)
class Relocated:
    config: LaunchConfig
    # Plan row label -> how the value differs from the recorded one, for each setting that does.
    changed: dict[str, str] = field(default_factory=dict)


def relocate(ec2: Ec2Gateway, region: str, recorded: LaunchConfig, elsewhere: Elsewhere) -> Relocated:
    if elsewhere.subnet_id is None or not elsewhere.security_group_ids:
        raise BadInput(
            f"the recorded subnet and security groups are in the source region's VPC: give --subnet SUBNET_ID "
            f"and --security-group SG_ID (repeatable) of {region}"
        )
    subnet = ec2.subnet(elsewhere.subnet_id)
    if subnet is None:
        raise BadInput(f"no subnet {elsewhere.subnet_id} in {region}")
    _check_groups(ec2, region, subnet, elsewhere.security_group_ids)
    config = replace(
        recorded,
        subnet_id=subnet.subnet_id,
        availability_zone=subnet.availability_zone,
        security_group_ids=elsewhere.security_group_ids,
        instance_type=elsewhere.instance_type or recorded.instance_type,
        key_name=_key_name(ec2, region, recorded.key_name, elsewhere),
    )
    return Relocated(config, _changes(recorded, config))


def _check_groups(ec2: Ec2Gateway, region: str, subnet: Subnet, group_ids: tuple[str, ...]) -> None:
    vpcs = {group.group_id: group.vpc_id for group in ec2.security_groups(group_ids)}
    missing = [group for group in group_ids if group not in vpcs]
    if missing:
        raise BadInput(f"no security group {', '.join(missing)} in {region}")
    # RunInstances would refuse it too, but naming the VPCs says which of the two to change.
    outside = [group for group in group_ids if vpcs[group] != subnet.vpc_id]
    if outside:
        raise BadInput(
            f"security group {', '.join(f'{g} ({vpcs[g]})' for g in outside)} is not in the VPC of "
            f"{subnet.subnet_id} ({subnet.vpc_id})"
        )


def _key_name(ec2: Ec2Gateway, region: str, recorded: str | None, elsewhere: Elsewhere) -> str | None:
    if elsewhere.no_key and elsewhere.key_name:
        raise BadInput("give --key-name or --no-key, not both")
    if elsewhere.no_key:
        return None
    if elsewhere.key_name:
        if not ec2.key_pair_exists(elsewhere.key_name):
            raise BadInput(f"no key pair {elsewhere.key_name!r} in {region}")
        return elsewhere.key_name
    if recorded is None or ec2.key_pair_exists(recorded):
        return recorded
    raise BadInput(
        f"the recorded key pair {recorded!r} does not exist in {region} (key pairs are regional): import its "
        f"public key there under that name, or pass --key-name NAME or --no-key"
    )


def _changes(recorded: LaunchConfig, config: LaunchConfig) -> dict[str, str]:
    pairs = {
        "instance type": (recorded.instance_type, config.instance_type),
        "subnet": (recorded.subnet_id, config.subnet_id),
        "availability zone": (recorded.availability_zone, config.availability_zone),
        "security groups": (", ".join(recorded.security_group_ids), ", ".join(config.security_group_ids)),
        "key pair": (recorded.key_name, config.key_name),
    }
    return {
        label: f"recorded: {before or 'none'}" for label, (before, after) in pairs.items() if before != after
    }
