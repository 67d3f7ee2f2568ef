"""Retention under moto with real EC2 semantics (SPEC §4): every guard, deletion, orphans, failures.

Most tests call the domain the way the two handlers do: the run plans and queues its deletions on the
deletion queue, then each batch goes to the deleter, as the queue's event source would deliver it; the
result shown is the run's, with what the deleter did with its batches. The handlers themselves run
through tests/sam_local.py with the events/retention-*.json and deleter files, and emit the metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.client import BaseClient

from amikeeper import clients
from amikeeper import retention as retention_module
from amikeeper.config import load_settings
from amikeeper.gateways import ec2 as ec2_gateway
from amikeeper.model import GONE_SINCE, DeletionBatch, tag_map
from amikeeper.pacing import TokenBucket
from amikeeper.retention import REFERENCE_CHECK_LIMIT, DeleterDeps, RetentionDeps, delete_batch, run_retention
from amikeeper.retention_plan import RetentionConfig
from amikeeper.retention_result import RetentionResult
from amikeeper.retention_summary import retention_summary
from amikeeper.runtime import Runtime
from tests.fixtures.ec2_fidelity import Ec2Fidelity
from tests.fixtures.retention_fleet import Fleet, day
from tests.fixtures.stack import MotoStack, ReceivedNotification
from tests.sam_local import ResolvedFunction, SamApp, load_event

pytestmark = pytest.mark.usefixtures("without_public_amis")

NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
DAYS = 200
RETAIN_THREE = {"Backup:Retain": "last=3"}


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def retention_fn(functions: dict[str, ResolvedFunction]) -> ResolvedFunction:
    return functions["RetentionFunction"]


@pytest.fixture
def runtime(retention_fn: ResolvedFunction) -> Runtime:
    """The Runtime the handler builds at cold start, from the same template-resolved environment."""
    return Runtime(load_settings(retention_fn.runtime_environment()))


@pytest.fixture
def fleet(stack: MotoStack, runtime: Runtime, aws: Ec2Fidelity) -> Fleet:
    stack.set_policies({"gold": {"retain": "last=2"}})
    return Fleet(stack.region, runtime.stack, runtime.catalog(), aws)


@pytest.fixture(params=["DescribeImageReferences", "scan"])
def reference_check(request: pytest.FixtureRequest, aws: Ec2Fidelity) -> str:
    """Both ways of finding what uses an AMI: the API where the account has it, the scans where not."""
    if request.param == "scan":
        aws.disable_image_references()
    return str(request.param)


@dataclass
class Sleeper:
    slept: list[float] = field(default_factory=list)
    now: float = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Runner:
    """Runs retention as the two handlers do: the run, then every batch it queued through the deleter,
    with a fake pacing clock; the run's result, with what the deleter did with its batches."""

    runtime: Runtime
    stack: MotoStack
    sleeper: Sleeper = field(default_factory=Sleeper)

    def __call__(
        self,
        now: datetime = NOW,
        *,
        dry_run: bool = False,
        regions: tuple[str, ...] | None = None,
    ) -> RetentionResult:
        return with_deletions(self.plan(now, dry_run=dry_run, regions=regions), self.delete_queued())

    def plan(
        self, now: datetime = NOW, *, dry_run: bool = False, regions: tuple[str, ...] | None = None
    ) -> RetentionResult:
        """The retention run alone: it plans and queues its deletions."""
        paced = self._paced()
        deps = RetentionDeps(
            ec2=paced.location,
            autoscaling=paced.autoscaling_at,
            deletions=paced.deletions,
            copies=paced.copies,
            notifier=paced.notifier,
            ledger=paced.ledger,
        )
        regions = regions or self.runtime.settings.regions
        return run_retention(now, regions, self.runtime.catalog(), self._config, deps, dry_run=dry_run)

    def delete_queued(self) -> list[RetentionResult]:
        """What the deletion queue's event source does next: each batch to the deleter."""
        paced = self._paced()
        deps = DeleterDeps(ec2=paced.location, notifier=paced.notifier, ledger=paced.ledger)
        batches = [DeletionBatch.model_validate_json(r["body"]) for r in self.stack.deletion_messages()]
        return [delete_batch(batch, self._config, deps) for batch in batches]

    @property
    def _config(self) -> RetentionConfig:
        return RetentionConfig.from_settings(self.runtime.settings)

    def _paced(self) -> Runtime:
        """As the handlers wire it, with the pacing on the fake clock; fresh clients for each step."""
        return Runtime(self.runtime.settings, clock=self.sleeper.clock, sleep=self.sleeper.sleep)


def with_deletions(planned: RetentionResult, deleted: list[RetentionResult]) -> RetentionResult:
    """The run's result with the deleter's batches folded into each region's outcome."""
    regions = []
    for outcome in planned.regions:
        merged = replace(outcome)
        for done in (
            region for result in deleted for region in result.regions if region.region == outcome.region
        ):
            for name in DONE_FIELDS:
                setattr(merged, name, [*getattr(merged, name), *getattr(done, name)])
            merged.error = merged.error or done.error
        regions.append(merged)
    return replace(planned, regions=tuple(regions))


DONE_FIELDS = (
    "deleted",
    "failed_cleaned",
    "snapshots_deleted",
    "snapshots_shared",
    "orphans_deleted",
    "gone_already",
    "errors",
    "spared_held",
)


@pytest.fixture
def run(runtime: Runtime, stack: MotoStack) -> Runner:
    return Runner(runtime, stack)


def summaries(stack: MotoStack) -> list[ReceivedNotification]:
    return [note for note in stack.notifications() if note.event == "retention.summary"]


def summary_of(result: RetentionResult) -> ReceivedNotification:
    """The retention.summary of a run, as a subscriber would read it, whether or not the run published it."""
    note = retention_summary(result)
    return ReceivedNotification(
        subject=note.subject_line(),
        event=note.event,
        severity=note.severity,
        text=note.text(),
        document=json.loads(json.dumps(note.document(), default=str)),
    )


def answer_instead(
    client: BaseClient, operation: str, respond: Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None]
) -> None:
    """Answer `operation` on this client without calling moto when `respond` returns (status, body).

    This is how a throttled or refused call looks after the SDK's retries gave up: the request
    never reaches the service and the caller gets the error.
    """

    def before_call(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]] | None:
        answer = respond(params)
        if answer is None:
            return None
        status, body = answer
        return SimpleNamespace(status_code=status, headers={}), body | {
            "ResponseMetadata": {"HTTPStatusCode": status}
        }

    service = client.meta.service_model.service_id.hyphenize()
    hook: Any = before_call  # botocore types hooks as returning None; a before-call hook may answer
    client.meta.events.register(f"before-call.{service}.{operation}", hook)


def refuse(region: str, operation: str, code: str, *, only: tuple[str, str] | None = None) -> None:
    """EC2 in `region` answers `operation` with `code`; `only` = (request key, value) narrows it to one resource."""

    def respond(params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if only is not None and params["body"].get(only[0]) != only[1]:
            return None
        return 400, {"Error": {"Code": code, "Message": f"{operation} refused ({code})"}}

    answer_instead(clients.ec2(region), operation, respond)


def count_calls(client: BaseClient, operation: str) -> list[int]:
    calls: list[int] = []
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"after-call.{service}.{operation}", lambda **_: calls.append(1))
    return calls


# --- deletion -------------------------------------------------------------------------------------------
def test_expired_backups_are_deregistered_with_every_snapshot_they_owned(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    # Given an instance with a root and two data volumes and five daily backups, retention last=3
    web = fleet.launch(RETAIN_THREE, data_volumes=2)
    backups = [fleet.back_up(web, day(n)) for n in range(5)]
    expired = backups[3:]
    expired_snapshots = fleet.snapshots_of(expired)
    assert len(expired_snapshots) == 6
    # When retention runs
    result = run()
    # Then the two oldest AMIs are gone with all six snapshots, and the three newest remain
    assert fleet.image_ids_of(web) == set(backups[:3])
    assert not expired_snapshots & set(fleet.snapshots())
    assert fleet.unreferenced_managed_snapshots() == set()
    assert result.metrics() == {
        "AmisExamined": 5,
        "AmisDeleted": 2,
        "SnapshotsDeleted": 6,
        "KeptInUse": 0,
        "RetentionErrors": 0,
        "OrphanSnapshotsDeleted": 0,
    }
    # And nobody is mailed for routine deletions; the run's summary lists the deleted AMIs
    assert summaries(stack) == []
    summary = summary_of(result)
    assert summary.severity == "info"
    assert sorted(summary.document["regions"][0]["done"]["deleted"]["items"]) == sorted(expired)
    assert sorted(summary.document["regions"][0]["done"]["snapshots_deleted"]["items"]) == sorted(
        expired_snapshots
    )


def test_snapshots_are_deleted_one_by_one_when_the_sdk_lacks_delete_associated_snapshots(
    fleet: Fleet, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SDK whose DeregisterImage has no DeleteAssociatedSnapshots parameter
    original = ec2_gateway.Ec2Gateway.__init__

    def old_sdk(self: ec2_gateway.Ec2Gateway, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.deletes_associated_snapshots = False

    monkeypatch.setattr(ec2_gateway.Ec2Gateway, "__init__", old_sdk)
    web = fleet.launch(RETAIN_THREE, data_volumes=1)
    backups = [fleet.back_up(web, day(n)) for n in range(4)]
    expired_snapshots = fleet.snapshots_of(backups[3:])
    # When retention runs
    result = run()
    # Then the AMI is deregistered and each of its snapshots deleted after it
    assert fleet.image_ids_of(web) == set(backups[:3])
    assert set(result.regions[0].snapshots_deleted) == expired_snapshots
    assert fleet.unreferenced_managed_snapshots() == set()


def test_snapshot_that_another_ami_still_uses_is_kept(fleet: Fleet, run: Runner) -> None:
    # Given an expired backup whose root snapshot a person registered as another AMI
    web = fleet.launch(RETAIN_THREE, data_volumes=1)
    backups = [fleet.back_up(web, day(n)) for n in range(4)]
    image = fleet.images()[backups[3]]
    root = image["BlockDeviceMappings"][0]
    shared_snapshot = root["Ebs"]["SnapshotId"]
    fleet.ec2.register_image(
        Name="restored-by-hand",
        RootDeviceName=root["DeviceName"],
        BlockDeviceMappings=[{"DeviceName": root["DeviceName"], "Ebs": {"SnapshotId": shared_snapshot}}],
    )
    # When retention deletes that backup
    result = run()
    # Then the shared snapshot survives, reported as kept, and the other one is deleted
    assert backups[3] in result.regions[0].deleted
    assert result.regions[0].snapshots_shared == [shared_snapshot]
    assert shared_snapshot in fleet.snapshots()
    assert result.error_count == 0


# --- guards -----------------------------------------------------------------------------------------------
def test_held_ami_is_kept_forever(fleet: Fleet, run: Runner, stack: MotoStack) -> None:
    # Given an expired backup on legal hold (value in another case, with blanks)
    web = fleet.launch(RETAIN_THREE)
    backups = [fleet.back_up(web, day(n)) for n in range(5)]
    fleet.tag(backups[4], **{"Backup:Hold": " TRUE "})
    # When retention runs
    result = run()
    # Then the held AMI survives and is reported as held; its unheld sibling is deleted
    assert fleet.image_ids_of(web) == {*backups[:3], backups[4]}
    assert result.regions[0].deleted == [backups[3]]
    assert summary_of(result).document["regions"][0]["plan"]["held"]["items"] == [backups[4]]


def test_ami_in_use_by_an_instance_is_kept_unless_the_instance_is_terminated(
    fleet: Fleet, run: Runner, reference_check: str
) -> None:
    # Given expired backups: one runs an instance, one a stopped instance, one only a terminated instance
    web = fleet.launch({"Backup:Retain": "last=1"})
    backups = [fleet.back_up(web, day(n)) for n in range(4)]
    running = fleet.launch_from(backups[1])
    stopped = fleet.launch_from(backups[2])
    fleet.ec2.stop_instances(InstanceIds=[stopped])
    fleet.terminate(fleet.launch_from(backups[3]))
    # When retention runs
    result = run()
    # Then the two in use are kept-in-use, naming their instance; the third is deleted
    region = result.regions[0]
    assert region.reference_check == reference_check
    assert region.deleted == [backups[3]]
    assert region.plan is not None
    used = {verdict.image_id: verdict.used_by for verdict in region.plan.with_outcome("kept-in-use")}
    assert set(used) == {backups[1], backups[2]}
    # (once each, with its state, whichever way the use was found)
    assert used[backups[1]] == (f"instance {running} (running)",)
    assert used[backups[2]] == (f"instance {stopped} (stopped)",)
    assert result.metrics()["KeptInUse"] == 2


def test_ami_of_a_launch_templates_default_or_latest_version_is_kept_but_not_of_older_versions(
    fleet: Fleet, run: Runner, reference_check: str
) -> None:
    # Given a template whose $Default is v1, whose v2 is neither default nor latest, whose $Latest is v3
    web = fleet.launch({"Backup:Retain": "last=1"})
    backups = [fleet.back_up(web, day(n)) for n in range(5)]
    template = fleet.launch_template("web-template", backups[1])
    fleet.add_template_version(template, backups[2])
    fleet.add_template_version(template, backups[3])
    # When retention runs
    result = run()
    # Then $Default and $Latest keep their AMIs; v2's AMI and an unreferenced one are deleted
    region = result.regions[0]
    assert region.reference_check == reference_check
    assert sorted(region.deleted) == sorted([backups[2], backups[4]])
    assert region.plan is not None
    used = {verdict.image_id: verdict.used_by for verdict in region.plan.with_outcome("kept-in-use")}
    assert used == {
        backups[1]: (f"launch template web-template ({template}) $Default v1",),
        backups[3]: (f"launch template web-template ({template}) $Latest v3",),
    }


def test_a_large_run_scans_the_templates_once_instead_of_asking_for_every_ten_amis(
    fleet: Fleet, run: Runner
) -> None:
    # Given more expired AMIs than DescribeImageReferences is worth asking about, one of them in a template
    web = fleet.launch({"Backup:Retain": "last=1"}, data_volumes=0)
    backups = [fleet.back_up(web, day(n)) for n in range(REFERENCE_CHECK_LIMIT + 3)]
    template = fleet.launch_template("web-template", backups[7])
    # When retention runs (the account has DescribeImageReferences)
    result = run()
    # Then it reads the templates region-wide instead, and the template's AMI is still kept
    region = result.regions[0]
    assert region.reference_check == "scan"
    assert region.plan is not None
    assert [(v.image_id, v.used_by) for v in region.plan.with_outcome("kept-in-use")] == [
        (backups[7], (f"launch template web-template ({template}) $Default v1",))
    ]
    assert len(region.deleted) == REFERENCE_CHECK_LIMIT + 1


def test_templates_are_read_one_by_one_where_ec2_refuses_all_at_once(fleet: Fleet, run: Runner) -> None:
    # Given an account without DescribeImageReferences whose EC2 refuses $Default/$Latest of all templates
    fleet.fidelity.disable_image_references()

    def all_at_once(params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if "LaunchTemplateId" in params["body"]:
            return None
        return 400, {"Error": {"Code": "MissingParameter", "Message": "LaunchTemplateId is required"}}

    answer_instead(clients.ec2(fleet.region), "DescribeLaunchTemplateVersions", all_at_once)
    web = fleet.launch({"Backup:Retain": "last=1"})
    backups = [fleet.back_up(web, day(n)) for n in range(3)]
    template = fleet.launch_template("web-template", backups[2])
    # When retention runs
    result = run()
    # Then the template is still found, through DescribeLaunchTemplates and one call per template
    region = result.regions[0]
    assert (region.reference_check, region.error, region.deleted) == ("scan", None, [backups[1]])
    assert region.plan is not None
    assert [v.used_by for v in region.plan.with_outcome("kept-in-use")] == [
        (f"launch template web-template ({template}) $Default v1",)
    ]


def test_ami_named_by_a_launch_configuration_is_kept(fleet: Fleet, run: Runner, reference_check: str) -> None:
    web = fleet.launch({"Backup:Retain": "last=1"})
    backups = [fleet.back_up(web, day(n)) for n in range(3)]
    fleet.launch_configuration("web-asg-lc", backups[2])
    result = run()
    region = result.regions[0]
    assert region.deleted == [backups[1]]
    assert region.plan is not None
    assert [(v.image_id, v.used_by) for v in region.plan.with_outcome("kept-in-use")] == [
        (backups[2], ("launch configuration web-asg-lc",))
    ]


def test_foreign_amis_and_their_snapshots_are_never_touched(fleet: Fleet, run: Runner) -> None:
    # Given, for an instance with expired backups, an AMI a person made and one another stack made
    web = fleet.launch(RETAIN_THREE, data_volumes=1)
    backups = [fleet.back_up(web, day(n)) for n in range(5)]
    by_hand = fleet.foreign_image(web)
    other_stack = fleet.foreign_image(web, managed_by="amikeeper-staging")
    fleet.tag(other_stack, **{"amikeeper:instance-id": web, "amikeeper:slot": "2020-01-01T03:00:00Z"})
    foreign_snapshots = fleet.snapshots_of([by_hand, other_stack])
    fleet.fidelity.set_creation_date(fleet.region, by_hand, day(400))
    fleet.fidelity.set_creation_date(fleet.region, other_stack, day(400))
    # And the other stack's AMI is deregistered by hand, leaving its (old) snapshots behind
    fleet.ec2.deregister_image(ImageId=other_stack)
    # When retention runs
    result = run()
    # Then only this stack's expired backups went; the foreign AMI and every foreign snapshot remain
    assert set(fleet.images()) == {*backups[:3], by_hand}
    assert foreign_snapshots <= set(fleet.snapshots())
    assert result.metrics()["AmisExamined"] == 5
    assert result.metrics()["OrphanSnapshotsDeleted"] == 0


def test_pending_ami_is_never_touched_and_a_failed_one_is_cleaned_up(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    web = fleet.launch(RETAIN_THREE, data_volumes=1)
    backups = [fleet.back_up(web, day(n)) for n in range(3)]
    pending = fleet.back_up(web, day(30), state="pending")
    failed = fleet.back_up(web, day(31), state="failed")
    failed_snapshots = fleet.snapshots_of([failed])
    result = run()
    assert fleet.image_ids_of(web) == {*backups, pending}
    assert result.regions[0].failed_cleaned == [failed]
    assert not failed_snapshots & set(fleet.snapshots())
    assert result.metrics()["AmisDeleted"] == 1
    counts = summary_of(result).document["regions"][0]["counts"]
    assert (counts["pending"], counts["failed_cleaned"], counts["deleted"]) == (1, 1, 0)


def test_newest_backup_is_kept_however_old(fleet: Fleet, run: Runner) -> None:
    web = fleet.launch({"Backup:Retain": "within=1d"})
    only = fleet.back_up(web, day(300))
    run()
    assert fleet.image_ids_of(web) == {only}


# --- terminated instances -------------------------------------------------------------------------------
def test_terminated_instance_is_recorded_once_and_follows_its_recorded_policy(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    # Given a gold (last=2) instance with four backups, then terminated
    db = fleet.launch({"Backup": "gold"})
    backups = [fleet.back_up(db, day(n), policy="gold") for n in range(4)]
    fleet.terminate(db)
    # When retention first notices it
    first = run()
    # Then the time is recorded on its newest backup, and gold's rules still apply
    assert fleet.image_ids_of(db) == set(backups[:2])
    assert tag_map(fleet.images()[backups[0]]["Tags"])[GONE_SINCE] == "2026-11-29T04:00:00Z"
    assert first.regions[0].tagged_gone == [backups[0]]
    assert "newest backup kept until 2026-12-29T04:00:00Z" in summary_of(first).text
    # When retention runs again the next day, nothing is re-recorded
    second = run(NOW + timedelta(days=1))
    assert second.regions[0].tagged_gone == []
    assert tag_map(fleet.images()[backups[0]]["Tags"])[GONE_SINCE] == "2026-11-29T04:00:00Z"
    # And after the grace its backups age out: last=2 keeps nothing that will never be renewed
    last_snapshots = fleet.snapshots_of(backups[:2])
    late = run(NOW + timedelta(days=31))
    assert late.regions[0].plan is not None
    assert fleet.image_ids_of(db) == set()
    assert not last_snapshots & set(fleet.snapshots())


# --- orphan snapshots -----------------------------------------------------------------------------------
def test_orphan_snapshots_older_than_a_day_are_swept_and_counted(fleet: Fleet, run: Runner) -> None:
    # Given an old backup deregistered by hand (snapshots left), and a fresh one likewise
    web = fleet.launch(data_volumes=1)
    kept = fleet.back_up(web, day(0))
    old = fleet.back_up(web, day(5))
    young = fleet.back_up(web, NOW - timedelta(hours=3))
    old_snapshots, young_snapshots = fleet.snapshots_of([old]), fleet.snapshots_of([young])
    fleet.ec2.deregister_image(ImageId=old)
    fleet.ec2.deregister_image(ImageId=young)
    # And a person's AMI deregistered the same way, with untagged snapshots
    by_hand = fleet.foreign_image(web)
    hand_snapshots = fleet.snapshots_of([by_hand])
    fleet.fidelity.set_creation_date(fleet.region, by_hand, day(10))
    fleet.ec2.deregister_image(ImageId=by_hand)
    # When retention runs
    result = run()
    # Then only the old orphans of this stack are deleted
    snapshots = set(fleet.snapshots())
    assert not old_snapshots & snapshots
    assert young_snapshots | hand_snapshots <= snapshots
    assert sorted(result.regions[0].orphans_deleted) == sorted(old_snapshots)
    assert result.metrics()["OrphanSnapshotsDeleted"] == 2
    assert fleet.image_ids_of(web) == {kept}


# --- pagination -------------------------------------------------------------------------------------------
def test_every_page_is_read_when_there_are_more_amis_than_one_page(
    fleet: Fleet, run: Runner, monkeypatch: pytest.MonkeyPatch, reference_check: str
) -> None:
    # Given pages of five and 30 backups over three instances, plus templates and configurations
    monkeypatch.setattr(ec2_gateway, "PAGE_SIZE", 5)
    monkeypatch.setattr(ec2_gateway, "TEMPLATE_PAGE_SIZE", 5)
    instances = [fleet.launch(RETAIN_THREE) for _ in range(3)]
    backups = {iid: [fleet.back_up(iid, day(n)) for n in range(10)] for iid in instances}
    for index in range(7):
        fleet.launch_template(f"filler-{index}", backups[instances[0]][0])
    fleet.launch_template("uses-old", backups[instances[2]][9])
    describe_images = count_calls(clients.ec2(fleet.region), "DescribeImages")
    # When retention runs
    result = run()
    # Then all 30 AMIs were examined over several pages and each instance keeps exactly its three newest
    assert result.metrics()["AmisExamined"] == 30
    assert len(describe_images) >= 6
    for iid in instances[:2]:
        assert fleet.image_ids_of(iid) == set(backups[iid][:3])
    # And the template on the last page still protects its AMI
    assert fleet.image_ids_of(instances[2]) == {*backups[instances[2]][:3], backups[instances[2]][9]}
    assert fleet.unreferenced_managed_snapshots() == set()


# --- partial failure --------------------------------------------------------------------------------------
def test_one_refused_deletion_does_not_stop_the_others_and_the_next_run_finishes(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    # Given three instances with two expired backups each
    instances = [fleet.launch(RETAIN_THREE, data_volumes=1) for _ in range(3)]
    backups = {iid: [fleet.back_up(iid, day(n)) for n in range(5)] for iid in instances}
    throttled = backups[instances[0]][4]
    retried = sorted(fleet.snapshots_of([backups[instances[1]][4]]))[0]
    stuck = sorted(fleet.snapshots_of([backups[instances[2]][4]]))[0]
    # And DeregisterImage of one is throttled (after the SDK's retries), EC2 fails to delete two snapshots
    refuse(fleet.region, "DeregisterImage", "RequestLimitExceeded", only=("ImageId", throttled))
    fleet.fidelity.fail_snapshot_deletion(retried, "internal-error")
    fleet.fidelity.fail_snapshot_deletion(stuck, "internal-error")
    # And the retry of one of those is refused too
    refuse(fleet.region, "DeleteSnapshot", "InternalError", only=("SnapshotId", stuck))
    # When retention runs
    result = run()
    # Then every other expired AMI is gone, the retried snapshot too, and both errors are reported
    region = result.regions[0]
    assert len(region.deleted) == 5 and throttled not in region.deleted
    assert retried in region.snapshots_deleted
    assert sorted(str(error).split(":")[0] for error in region.errors) == sorted([throttled, stuck])
    assert result.metrics()["RetentionErrors"] == 2
    [summary] = summaries(stack)
    assert summary.severity == "error"
    assert "RequestLimitExceeded" in summary.text
    assert throttled in fleet.images() and stuck in fleet.snapshots()
    # When the refusals stop and the next run comes
    clients.reset()
    fleet.fidelity.fail_snapshot_deletion(stuck, "internal-error")  # EC2 still cannot; the sweep can
    finished = run(NOW + timedelta(hours=1))
    # Then it deletes the throttled AMI and sweeps the stuck snapshot: nothing is left behind
    assert finished.regions[0].deleted == [throttled]
    assert stuck in finished.regions[0].orphans_deleted
    assert finished.error_count == 0
    for iid in instances:
        assert fleet.image_ids_of(iid) == set(backups[iid][:3])
    assert fleet.unreferenced_managed_snapshots() == set()


def test_a_failing_region_is_reported_and_the_others_proceed(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    web = fleet.launch(RETAIN_THREE)
    backups = [fleet.back_up(web, day(n)) for n in range(4)]
    refuse("us-east-2", "DescribeImages", "UnauthorizedOperation")
    result = run(regions=("us-east-2", fleet.region))
    failed, healthy = result.regions
    assert failed.error is not None and "UnauthorizedOperation" in failed.error
    assert healthy.deleted == [backups[3]]
    [summary] = summaries(stack)
    assert summary.severity == "error"
    assert "us-east-2: region failed" in summary.text
    # And while the region keeps failing, it is mailed once a day, not on every hourly run
    run(NOW + timedelta(hours=1), regions=("us-east-2", fleet.region))
    assert summaries(stack) == []
    run(NOW + timedelta(days=1, hours=1), regions=("us-east-2", fleet.region))
    assert [note.severity for note in summaries(stack)] == ["error"]


# --- dry run ----------------------------------------------------------------------------------------------
def test_dry_run_reports_the_plan_the_real_run_then_executes_and_changes_nothing(
    fleet: Fleet, retention_fn: ResolvedFunction, stack: MotoStack, sam_app: SamApp
) -> None:
    # Given a mixed fleet: expired, held, in use, failed and orphaned resources
    web = fleet.launch(RETAIN_THREE, data_volumes=1)
    db = fleet.launch({"Backup": "gold"})
    web_backups = [fleet.back_up(web, day(n)) for n in range(6)]
    db_backups = [fleet.back_up(db, day(n), policy="gold") for n in range(4)]
    fleet.tag(web_backups[4], **{"Backup:Hold": "true"})
    fleet.launch_template("db", db_backups[3])
    fleet.back_up(web, day(40), state="failed")
    orphaned = fleet.back_up(web, day(41))
    fleet.ec2.deregister_image(ImageId=orphaned)
    before = (
        set(fleet.images()),
        set(fleet.snapshots()),
        {k: v.get("Tags") for k, v in fleet.images().items()},
    )
    events = {path.name: load_event(path) for path in sam_app.events_for(retention_fn.logical_id)}
    # When the dry-run event is invoked
    preview = retention_fn.invoke(events["retention-dry-run.json"])
    # Then nothing changed, and the summary says what would be deleted
    assert (
        set(fleet.images()),
        set(fleet.snapshots()),
        {k: v.get("Tags") for k, v in fleet.images().items()},
    ) == before
    [dry] = summaries(stack)
    assert dry.document["dry_run"] is True
    assert dry.subject.startswith("amikeeper retention dry run: 4 AMI(s) would be deleted")
    planned = dry.document["regions"][0]["plan"]
    would_delete = sorted(item["image_id"] for item in planned["delete"]["items"])
    would_sweep = sorted(item["snapshot_id"] for item in planned["orphan_snapshots"]["items"])
    assert preview["regions"][0]["deleted"] == 3 and preview["regions"][0]["failed_cleaned"] == 1
    # When the real tick for the same time is invoked
    real = retention_fn.invoke(events["retention-tick.json"])
    # Then exactly the previewed AMIs and snapshots are the ones deleted, without a message to anyone
    assert set(fleet.images()) == before[0] - set(would_delete)
    assert not set(would_sweep) & set(fleet.snapshots())
    assert real["regions"][0]["queued"] == 4 + 2  # the run queued them; the deleter deleted them
    [done] = stack.deletion_answers
    assert (done["regions"][0]["deleted"], done["regions"][0]["failed_cleaned"]) == (3, 1)
    assert summaries(stack) == []


# --- weeks of daily backups -------------------------------------------------------------------------------
def expected_days(days: list[date]) -> set[date]:
    """daily=7 weekly=4 monthly=6 for one backup a day, worked out by hand from the calendar."""
    newest_first = sorted(days, reverse=True)
    keep = set(newest_first[:7])
    for bucket, count in ((lambda d: d.isocalendar()[:2], 4), (lambda d: (d.year, d.month), 6)):
        periods: list[object] = []
        for each in newest_first:
            period = bucket(each)
            if period in periods:
                continue
            if len(periods) == count:
                break
            periods.append(period)
            keep.add(each)
    return keep


@pytest.mark.slow
def test_months_of_daily_backups_leave_exactly_what_the_expression_keeps_and_no_snapshot(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    # Given two instances on the default policy (daily=7 weekly=4 monthly=6), one with two data volumes
    instances = [fleet.launch(data_volumes=2), fleet.launch()]
    first = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    made: dict[str, dict[date, str]] = {iid: {} for iid in instances}
    protected: set[str] = set()
    foreign = fleet.foreign_image(instances[1])
    # When 200 days pass, each with a backup at 03:00 and a retention run at 04:00
    for offset in range(DAYS):
        slot = first + timedelta(days=offset)
        for iid in instances:
            made[iid][slot.date()] = fleet.back_up(iid, slot)
        if offset == 10:  # a legal hold on an early backup, and a launch template on another
            protected.add(made[instances[0]][slot.date()])
            fleet.tag(made[instances[0]][slot.date()], **{"Backup:Hold": "true"})
        if offset == 20:
            protected.add(made[instances[1]][slot.date()])
            fleet.launch_template("golden", made[instances[1]][slot.date()])
        result = run(slot + timedelta(hours=1))
        assert result.error_count == 0
    # Then each instance keeps exactly the backups of the expected days, plus the protected ones
    images = set(fleet.images())
    for iid in instances:
        expected = {made[iid][kept] for kept in expected_days(list(made[iid]))}
        assert fleet.image_ids_of(iid) == expected | (protected & set(made[iid].values()))
    assert len(expected_days(list(made[instances[0]]))) == 7 + 2 + 5  # weeks and months overlap days
    # And the foreign AMI survived, and not one snapshot of this stack is left without its AMI
    assert foreign in images
    assert fleet.unreferenced_managed_snapshots() == set()


# --- the handlers ---------------------------------------------------------------------------------------
def test_the_run_queues_its_deletions_in_batches_and_the_deleter_works_through_them(
    fleet: Fleet, retention_fn: ResolvedFunction, stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given six expired backups, and batches of two deletions
    monkeypatch.setattr(retention_module, "DELETIONS_PER_BATCH", 2)
    instances = [fleet.launch(RETAIN_THREE) for _ in range(3)]
    backups = {iid: [fleet.back_up(iid, day(n)) for n in range(5)] for iid in instances}
    # When the retention tick runs (and the deletion queue delivers its batches to the deleter)
    answer = retention_fn.invoke({"scheduled_time": "2026-11-29T04:00:00Z", "dry_run": False})
    # Then the run planned and queued six deletions, and three deleter invocations deleted them
    assert (answer["regions"][0]["queued"], answer["regions"][0]["deleted"]) == (6, 0)
    assert [done["regions"][0]["deleted"] for done in stack.deletion_answers] == [2, 2, 2]
    assert stack.deletion_failures == []
    for iid in instances:
        assert fleet.image_ids_of(iid) == set(backups[iid][:3])
    # And it is routine: nobody is mailed
    assert summaries(stack) == []


def test_an_ami_held_after_the_plan_is_spared_by_the_deleter(
    fleet: Fleet, run: Runner, stack: MotoStack
) -> None:
    # Given two expired backups, planned and queued for deletion
    web = fleet.launch(RETAIN_THREE)
    backups = [fleet.back_up(web, day(n)) for n in range(5)]
    run.plan()
    # When someone holds one of them before the deleter gets to the batch
    fleet.tag(backups[4], **{"Backup:Hold": "true"})
    [done] = run.delete_queued()
    # Then only the other is deleted; the held one is spared, and that is no error
    [region] = done.regions
    assert (region.deleted, region.spared_held, region.error_count) == ([backups[3]], [backups[4]], 0)
    assert fleet.image_ids_of(web) == {*backups[:3], backups[4]}


def test_a_deleter_that_dies_mid_batch_is_delivered_again_and_deletes_each_once(
    fleet: Fleet, retention_fn: ResolvedFunction, stack: MotoStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given four expired backups with a data volume each, and a deleter that dies after its first deletion
    instances = [fleet.launch(RETAIN_THREE, data_volumes=1) for _ in range(2)]
    backups = {iid: [fleet.back_up(iid, day(n)) for n in range(5)] for iid in instances}
    real_delete = retention_module._delete_image
    deaths: list[str] = []

    def delete_then_time_out(deletion: Any, gateway: Any, outcome: Any) -> None:
        real_delete(deletion, gateway, outcome)
        if not deaths:
            deaths.append(deletion.resource_id)
            raise TimeoutError("Task timed out after 120.00 seconds")

    monkeypatch.setattr(retention_module, "_delete_image", delete_then_time_out)
    # When the tick runs and the queue delivers the batch again after the crash
    retention_fn.invoke({"scheduled_time": "2026-11-29T04:00:00Z", "dry_run": False})
    # Then the second delivery finds the first AMI gone already and deletes the other three
    assert [str(failure) for failure in stack.deletion_failures] == ["Task timed out after 120.00 seconds"]
    [done] = stack.deletion_answers
    assert (done["regions"][0]["deleted"], done["regions"][0]["errors"]) == (3, 0)
    for iid in instances:
        assert fleet.image_ids_of(iid) == set(backups[iid][:3])
    assert fleet.unreferenced_managed_snapshots() == set()
    assert summaries(stack) == []


def test_handlers_emit_the_retention_metrics(
    fleet: Fleet, retention_fn: ResolvedFunction, capsys: pytest.CaptureFixture[str]
) -> None:
    web = fleet.launch(RETAIN_THREE, data_volumes=1)
    [fleet.back_up(web, day(n)) for n in range(4)]
    retention_fn.invoke({"scheduled_time": "2026-11-29T04:00:00Z"})
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # The run's (what it examined) and then the deleter's (what it deleted)
    [run_metrics, deleter_metrics] = emf
    for metrics in emf:
        assert metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Amikeeper/amikeeper"
    assert {name: run_metrics[name] for name in ("AmisExamined", "KeptInUse", "RetentionErrors")} == {
        "AmisExamined": [4.0],
        "KeptInUse": [0.0],
        "RetentionErrors": [0.0],
    }
    names = ("AmisDeleted", "SnapshotsDeleted", "OrphanSnapshotsDeleted", "RetentionErrors")
    assert {name: deleter_metrics[name] for name in names} == {
        "AmisDeleted": [1.0],
        "SnapshotsDeleted": [2.0],
        "OrphanSnapshotsDeleted": [0.0],
        "RetentionErrors": [0.0],
    }


def test_the_deleter_deletes_at_the_pace_of_the_regions_bucket(fleet: Fleet, run: Runner) -> None:
    # Given three expired backups queued for deletion, and a region bucket of one token refilled 5 a second
    web = fleet.launch(RETAIN_THREE)
    [fleet.back_up(web, day(n)) for n in range(6)]
    run.plan()
    sleeper = Sleeper()
    bucket = TokenBucket(capacity=1, clock=sleeper.clock, sleep=sleeper.sleep)
    deps = DeleterDeps(
        ec2=lambda region: ec2_gateway.Ec2Gateway(clients.ec2(region), bucket),
        notifier=run.runtime.notifier,
        ledger=run.runtime.ledger,
    )
    [batch] = [DeletionBatch.model_validate_json(r["body"]) for r in run.stack.deletion_messages()]
    # When the deleter works through the batch
    [region] = delete_batch(batch, RetentionConfig.from_settings(run.runtime.settings), deps).regions
    # Then it deleted all three, waiting for a token before the second and the third
    assert len(region.deleted) == 3
    assert sleeper.slept == pytest.approx([0.2, 0.2])
