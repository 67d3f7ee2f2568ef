"""moto at fleet scale: indexes for the lookups moto (and the EC2 fidelity extension) make by scanning.

With 10,000 instances and tens of thousands of AMIs, three of the simulated EC2's lookups scan every
object on every call, which makes a simulated day quadratic in the fleet size; none of them is the
code under test. While :func:`indexed_moto` is open they use indexes instead, with the same answers:

- CreateImage's unique-name check (InvalidAMIName.Duplicate) scanned every AMI;
- DeregisterImage/DeleteSnapshot's "is this snapshot still used by an AMI" scanned every AMI;
- moto's get_instance scanned every reservation, and RunInstances looked each new volume up among all;
- moto read the tags of one resource by matching every tag of every resource in the region, once per
  resource it filters or describes.

Each fast path falls back to the original scan whenever its index cannot answer for sure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import EC2Backend, ec2_backends
from moto.ec2.models.amis import Ami
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.elastic_block_store import EBSBackend, Volume
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

from tests.fixtures import ec2_fidelity
from tests.fixtures.ec2_fidelity import Ec2Fidelity


class IndexedAmis(dict[str, Ami]):
    """backend.amis, with the AMI ids of each name and of each moto-own root snapshot."""

    def __init__(self, amis: dict[str, Ami]) -> None:
        super().__init__()
        self.by_name: defaultdict[str, set[str]] = defaultdict(set)
        self.by_root_snapshot: defaultdict[str, set[str]] = defaultdict(set)
        for ami_id, ami in amis.items():
            self[ami_id] = ami

    def __setitem__(self, ami_id: str, ami: Ami) -> None:
        super().__setitem__(ami_id, ami)
        self.by_name[str(ami.name)].add(ami_id)
        snapshot = getattr(ami, "ebs_snapshot", None)
        if snapshot is not None:
            self.by_root_snapshot[snapshot.id].add(ami_id)

    def __delitem__(self, ami_id: str) -> None:
        self.pop(ami_id)

    def pop(self, ami_id: str, *default: Any) -> Any:
        if ami_id not in self:
            return super().pop(ami_id, *default)
        ami = super().pop(ami_id)
        self.by_name[str(ami.name)].discard(ami_id)
        return ami


class IndexedDevices(dict[str, tuple[Any, ...]]):
    """The fidelity extension's AMI -> devices map, with the AMI ids of each device snapshot."""

    def __init__(self, devices: dict[str, tuple[Any, ...]]) -> None:
        super().__init__()
        self.by_snapshot: defaultdict[str, set[str]] = defaultdict(set)
        for ami_id, bound in devices.items():
            self[ami_id] = bound

    def __setitem__(self, ami_id: str, devices: tuple[Any, ...]) -> None:
        super().__setitem__(ami_id, devices)
        for device in devices:
            self.by_snapshot[device.snapshot_id].add(ami_id)


_ORIGINAL_CHECK_NAME = ec2_fidelity._check_ami_name
_ORIGINAL_AMIS_USING = ec2_fidelity._amis_using
_ORIGINAL_GET_INSTANCE = InstanceBackend.get_instance
_ORIGINAL_DESCRIBE_VOLUMES = EBSBackend.describe_volumes


def _check_ami_name(backend: EC2Backend, name: str) -> None:
    amis = backend.amis
    if not isinstance(amis, IndexedAmis):
        _ORIGINAL_CHECK_NAME(backend, name)
        return
    if not ec2_fidelity._AMI_NAME.fullmatch(name):
        _ORIGINAL_CHECK_NAME(backend, name)  # raises InvalidAMIName.Malformed with EC2's message
    for ami_id in sorted(amis.by_name.get(name, ())):
        ami = amis.get(ami_id)
        if ami is not None and ami.name == name and ami.owner_id == backend.account_id:
            raise EC2ClientError(
                "InvalidAMIName.Duplicate", f"AMI name {name} is already in use by AMI {ami.id}"
            )


def _amis_using(backend: EC2Backend, snapshot_id: str) -> list[str]:
    amis = backend.amis
    devices = ec2_fidelity._active()._devices
    if not isinstance(amis, IndexedAmis) or not isinstance(devices, IndexedDevices):
        return _ORIGINAL_AMIS_USING(backend, snapshot_id)
    candidates = devices.by_snapshot.get(snapshot_id, set()) | amis.by_root_snapshot.get(snapshot_id, set())
    return [
        ami_id
        for ami_id in sorted(candidates)
        if ami_id in amis and snapshot_id in ec2_fidelity._snapshot_ids_of(amis[ami_id])
    ]


def _get_instance(self: InstanceBackend, instance_id: str) -> Instance:
    index: dict[str, Instance] = self.__dict__.setdefault("_bench_instances", {})
    found = index.get(instance_id)
    if found is None:
        # Launched since the index was last brought up to date: index the reservations added since, and
        # the newest again (RunInstances registers a reservation first, then fills it one by one).
        seen: int = self.__dict__.get("_bench_reservations", 0)
        reservations = list(self.reservations.values())
        for reservation in reservations[seen:]:
            index.update((instance.id, instance) for instance in reservation.instances)
        self.__dict__["_bench_reservations"] = max(0, len(reservations) - 1)
        found = index.get(instance_id)
    if found is None:
        return _ORIGINAL_GET_INSTANCE(self, instance_id)  # raises InvalidInstanceID.NotFound
    return found


def _describe_volumes(
    self: EBSBackend, volume_ids: list[str] | None = None, filters: Any = None
) -> list[Volume]:
    if volume_ids and len(volume_ids) == 1 and not filters and volume_ids[0] in self.volumes:
        return [self.volumes[volume_ids[0]]]
    return _ORIGINAL_DESCRIBE_VOLUMES(self, volume_ids, filters)


def _get_tags(self: TaggedEC2Resource) -> list[dict[str, str]]:
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    tags = self.ec2_backend.tags.get(resource_id, {})  # type: ignore[attr-defined]
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
        for key, value in tags.items()
    ]


@contextmanager
def indexed_moto(fidelity: Ec2Fidelity, account_id: str, regions: list[str]) -> Iterator[None]:
    """Index the regions' AMIs and the fidelity extension's devices (inside real_ec2_semantics())."""
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(ec2_fidelity, "_check_ami_name", _check_ami_name))
        stack.enter_context(mock.patch.object(ec2_fidelity, "_amis_using", _amis_using))
        stack.enter_context(mock.patch.object(InstanceBackend, "get_instance", _get_instance))
        stack.enter_context(mock.patch.object(TaggedEC2Resource, "get_tags", _get_tags))
        stack.enter_context(mock.patch.object(EBSBackend, "describe_volumes", _describe_volumes))
        fidelity._devices = IndexedDevices(fidelity._devices)
        for region in regions:
            backend = ec2_backends[account_id][region]
            backend.amis = IndexedAmis(backend.amis)
        yield
