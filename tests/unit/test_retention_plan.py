"""Retention planning without AWS (SPEC §4): grouping, every guard, terminated grace, orphans, the summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amikeeper.model import GONE_SINCE, Image, Instance, Snapshot, TagKeys
from amikeeper.notifications import SNS_MESSAGE_LIMIT, Notification
from amikeeper.pacing import InvalidBucketError, TokenBucket
from amikeeper.policies import PolicyCatalog, build_catalog
from amikeeper.retention_plan import (
    RegionFacts,
    RetentionConfig,
    RetentionPlan,
    Verdict,
    orphan_suspects,
    plan_region,
)
from amikeeper.retention_result import ItemError, RegionOutcome, RetentionResult
from amikeeper.retention_summary import retention_summary

REGION = "eu-west-1"
STACK = "amikeeper"
NOW = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)
CONFIG = RetentionConfig(stack_name=STACK, tag_keys=TagKeys("Backup"), terminated_grace=timedelta(days=30))
WEB = "i-0000000000000000a"
DB = "i-0000000000000000b"


def catalog(document: dict[str, object] | None = None, *, retention: str = "last=3") -> PolicyCatalog:
    return build_catalog("daily@03:00", retention, ZoneInfo("UTC"), json.dumps(document or {}))


def day(offset: int) -> datetime:
    """03:00 UTC, `offset` days before NOW's day."""
    return datetime(2026, 11, 29, 3, 0, tzinfo=UTC) - timedelta(days=offset)


def image(
    instance_id: str | None,
    when: datetime,
    *,
    state: str = "available",
    policy: str = "default",
    image_id: str | None = None,
    **tags: str,
) -> Image:
    base = {
        "amikeeper:managed-by": STACK,
        "amikeeper:policy": policy,
        "amikeeper:slot": f"{when:%Y-%m-%dT%H:%M:%SZ}",
    }
    if instance_id is not None:
        base["amikeeper:instance-id"] = instance_id
    suffix = (instance_id or "i-none")[-1]
    return Image(
        image_id=image_id or f"ami-{suffix}{when:%Y%m%d%H}",
        name=f"n-{when:%Y%m%d%H}",
        state=state,
        created=when + timedelta(minutes=4),
        tags=base | {key.replace("__", ":"): value for key, value in tags.items()},
        snapshot_ids=(f"snap-{suffix}{when:%Y%m%d%H}",),
    )


def live(instance_id: str, state: str = "running", **tags: str) -> Instance:
    return Instance(instance_id, state, {"Backup": "true", **tags}, image_id="ami-0base0000000000000")


def facts(
    images: Sequence[Image],
    instances: Sequence[Instance] = (),
    *,
    in_use: dict[str, tuple[str, ...]] | None = None,
) -> RegionFacts:
    return RegionFacts(tuple(images), {record.instance_id: record for record in instances}, in_use or {})


def plan(regional: RegionFacts, cat: PolicyCatalog | None = None, now: datetime = NOW) -> RetentionPlan:
    return plan_region(REGION, regional, cat or catalog(), CONFIG, now)


def outcomes(result: RetentionPlan) -> dict[str, str]:
    return {verdict.image_id: verdict.outcome for verdict in result.verdicts}


def by_id(result: RetentionPlan) -> dict[str, Verdict]:
    return {verdict.image_id: verdict for verdict in result.verdicts}


# --- grouping and the rules --------------------------------------------------------------------------
def test_each_instance_is_judged_on_its_own_backups_with_its_own_policy() -> None:
    # Given web on the default policy (last=3) and db on gold (last=1), five daily backups each
    web = [image(WEB, day(n)) for n in range(5)]
    db = [image(DB, day(n), policy="gold") for n in range(5)]
    cat = catalog({"gold": {"retain": "last=1"}})
    # When the region is planned
    result = plan(facts([*web, *db], [live(WEB), live(DB, Backup="gold")]), cat)
    # Then web keeps its three newest and db only its newest
    kept = {verdict.image_id for verdict in result.verdicts if not verdict.delete}
    assert kept == {web[0].image_id, web[1].image_id, web[2].image_id, db[0].image_id}
    assert {v.image_id for v in result.with_outcome("expired")} == {
        web[3].image_id,
        web[4].image_id,
        *(i.image_id for i in db[1:]),
    }
    # And every verdict says why
    assert by_id(result)[web[0].image_id].reasons == ("last #1", "newest backup")
    assert by_id(result)[web[4].image_id].reasons == ("expired",)


def test_instance_retain_tag_overrides_the_policy() -> None:
    # Given an instance whose Backup:Retain keeps only the newest backup
    backups = [image(WEB, day(n)) for n in range(3)]
    result = plan(facts(backups, [live(WEB, **{"Backup:Retain": "1"})]))
    # Then the two older backups expire
    assert [v.outcome for v in result.verdicts] == ["kept", "expired", "expired"]


def test_backup_time_is_the_slot_tag_not_the_creation_date() -> None:
    # Given two backups whose creation dates are in the opposite order of their slots (a late retry)
    early_slot = image(WEB, day(2), image_id="ami-0early")
    late_slot = image(WEB, day(1), image_id="ami-0late")
    early_slot = Image(**{**early_slot.__dict__, "created": day(0)})
    # When only one is kept
    result = plan(facts([early_slot, late_slot], [live(WEB, **{"Backup:Retain": "1"})]))
    # Then it is the one with the later slot
    assert outcomes(result) == {"ami-0late": "kept", "ami-0early": "expired"}


# --- guards ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["true", " TRUE ", "True", "yes"])
def test_held_backup_is_kept_whatever_the_rules(value: str) -> None:
    backups = [image(WEB, day(n)) for n in range(5)]
    held = image(WEB, day(9), image_id="ami-0held", Backup__Hold=value)
    result = plan(facts([*backups, held], [live(WEB)]))
    assert by_id(result)["ami-0held"].outcome == "held"
    assert "held" in by_id(result)["ami-0held"].reasons


def test_hold_tag_with_another_value_does_not_hold() -> None:
    result = plan(
        facts([image(WEB, day(0)), image(WEB, day(9), image_id="ami-0x", Backup__Hold="false")], [live(WEB)])
    )
    assert by_id(result)["ami-0x"].outcome == "kept"  # last=3 keeps it anyway; not because of a hold
    many = [image(WEB, day(n)) for n in range(4)]
    result = plan(facts([*many, image(WEB, day(9), image_id="ami-0x", Backup__Hold="no")], [live(WEB)]))
    assert by_id(result)["ami-0x"].outcome == "expired"


@pytest.mark.parametrize("state", ["pending", "transient", "invalid", "error", "disabled"])
def test_backup_that_is_not_available_or_failed_is_never_touched(state: str) -> None:
    backups = [image(WEB, day(n)) for n in range(4)]
    odd = image(WEB, day(20), state=state, image_id="ami-0odd")
    result = plan(facts([*backups, odd], [live(WEB)]))
    assert by_id(result)["ami-0odd"].outcome == "pending"
    assert not by_id(result)["ami-0odd"].delete


def test_failed_backup_is_cleaned_up_even_when_it_is_the_newest() -> None:
    failed = image(WEB, day(0), state="failed", image_id="ami-0failed")
    result = plan(facts([failed, image(WEB, day(1))], [live(WEB)]))
    assert by_id(result)["ami-0failed"].outcome == "failed"
    assert by_id(result)["ami-0failed"].delete


def test_expired_backup_in_use_is_kept_and_reported_as_kept_in_use() -> None:
    backups = [image(WEB, day(n)) for n in range(5)]
    used = backups[4].image_id
    result = plan(facts(backups, [live(WEB)], in_use={used: ("launch template lt-1 $Default v1",)}))
    verdict = by_id(result)[used]
    assert verdict.outcome == "kept-in-use"
    assert verdict.used_by == ("launch template lt-1 $Default v1",)
    # And being in use never changes what the rules decide for the others
    assert by_id(result)[backups[3].image_id].outcome == "expired"


def test_backup_in_use_that_a_rule_keeps_anyway_counts_as_kept() -> None:
    backups = [image(WEB, day(n)) for n in range(2)]
    result = plan(facts(backups, [live(WEB)], in_use={backups[0].image_id: ("instance i-1 (running)",)}))
    assert by_id(result)[backups[0].image_id].outcome == "kept"
    assert "in use" in by_id(result)[backups[0].image_id].reasons


def test_newest_backup_of_a_live_instance_is_protected() -> None:
    result = plan(facts([image(WEB, day(40))], [live(WEB)]))
    verdict = result.verdicts[0]
    assert verdict.outcome == "kept"
    assert "newest backup" in verdict.reasons
    assert result.instances[0].newest_protected


def test_amis_without_an_instance_id_tag_are_left_alone_except_failed_ones() -> None:
    stray = image(None, day(50), image_id="ami-0stray")
    broken = image(None, day(51), state="failed", image_id="ami-0broken")
    result = plan(facts([stray, broken]))
    assert outcomes(result) == {"ami-0stray": "skipped", "ami-0broken": "failed"}


# --- the instance's policy ---------------------------------------------------------------------------
def test_instance_with_an_invalid_tag_is_left_alone_and_named() -> None:
    backups = [image(WEB, day(n)) for n in range(5)]
    failed = image(WEB, day(9), state="failed", image_id="ami-0failed")
    result = plan(facts([*backups, failed], [live(WEB, **{"Backup:Retain": "forever"})]))
    assert {v.outcome for v in result.verdicts if v.image_id != "ami-0failed"} == {"skipped"}
    assert by_id(result)["ami-0failed"].outcome == "failed"
    assert "Backup:Retain='forever' is invalid" in result.notes[0]


def test_instance_no_longer_opted_in_follows_its_recorded_policy() -> None:
    backups = [image(WEB, day(n), policy="gold") for n in range(4)]
    cat = catalog({"gold": {"retain": "last=2"}})
    result = plan(facts(backups, [live(WEB, Backup="false")]), cat)
    assert [v.outcome for v in result.verdicts] == ["kept", "kept", "expired", "expired"]
    assert result.instances[0].status == "not opted in"
    assert result.instances[0].policy == "gold"
    assert "no longer opted in" in result.notes[0]


# --- terminated instances ------------------------------------------------------------------------------
@pytest.mark.parametrize("listing", [[], [live(WEB, state="terminated")]], ids=["not listed", "terminated"])
def test_instance_first_noticed_gone_gets_the_time_recorded_on_its_newest_backup(
    listing: list[Instance],
) -> None:
    backups = [image(WEB, day(n)) for n in range(2)]
    result = plan(facts(backups, listing))
    assert [(tag.image_id, tag.since) for tag in result.gone_since_tags] == [(backups[0].image_id, NOW)]
    assert result.instances[0].status == "gone"
    assert result.instances[0].newest_protected
    assert "newest backup" in by_id(result)[backups[0].image_id].reasons
    assert "newest backup kept until 2026-12-29T04:00:00Z" in result.notes[0]


def test_gone_instance_already_recorded_is_not_tagged_again_and_keeps_its_grace() -> None:
    since = NOW - timedelta(days=29)
    backups = [
        image(WEB, day(n), **({GONE_SINCE: f"{since:%Y-%m-%dT%H:%M:%SZ}"} if n == 0 else {}))
        for n in range(2)
    ]
    result = plan(facts(backups))
    assert result.gone_since_tags == ()
    assert result.instances[0].gone_since == since
    assert "newest backup" in by_id(result)[backups[0].image_id].reasons


def test_after_the_grace_a_gone_instances_backups_age_out_under_its_rules() -> None:
    # Given an instance gone 31 days ago (grace 30) whose last daily backups were taken before that
    since = NOW - timedelta(days=31)
    backups = [
        image(WEB, day(31 + n), **({GONE_SINCE: f"{since:%Y-%m-%dT%H:%M:%SZ}"} if n == 0 else {}))
        for n in range(5)
    ]
    # When retention runs with last=3: no backup will ever come again, so last=N keeps nothing
    result = plan(facts(backups))
    assert not result.instances[0].newest_protected
    assert [v.outcome for v in result.verdicts] == ["expired"] * 5
    assert "grace over" in result.notes[0]
    # And with daily=35 the rules count back from now: days 31..34 are within 35 days, day 35 is not
    aged = plan(facts(backups), catalog(retention="daily=35"))
    assert [v.outcome for v in aged.verdicts] == ["kept", "kept", "kept", "kept", "expired"]
    # And a held one still survives
    held = [*backups[:4], image(WEB, day(35), **{"Backup__Hold": "true"})]
    assert plan(facts(held)).verdicts[-1].outcome == "held"


def test_mangled_gone_since_tag_does_not_end_the_grace_early() -> None:
    backups = [image(WEB, day(0), **{GONE_SINCE: "yesterday"})]
    result = plan(facts(backups))
    assert result.instances[0].gone_since == NOW
    assert [tag.image_id for tag in result.gone_since_tags] == [backups[0].image_id]


def test_gone_instance_follows_the_policy_recorded_on_its_newest_backup() -> None:
    backups = [image(WEB, day(n), policy="gold") for n in range(4)]
    result = plan(facts(backups), catalog({"gold": {"retain": "last=1"}}))
    assert [v.outcome for v in result.verdicts] == ["kept", "expired", "expired", "expired"]
    assert result.instances[0].policy == "gold"


def test_gone_instance_with_a_policy_that_no_longer_exists_falls_back_to_the_default() -> None:
    backups = [image(WEB, day(n), policy="platinum") for n in range(5)]
    result = plan(facts(backups))
    assert result.instances[0].policy == "default"
    assert "recorded policy 'platinum' no longer exists; the default policy applies" in result.notes[0]
    assert [v.outcome for v in result.verdicts] == ["kept", "kept", "kept", "expired", "expired"]


def test_gone_instance_whose_named_policy_cannot_be_read_is_left_alone() -> None:
    backups = [image(WEB, day(n), policy="gold") for n in range(5)]
    broken = build_catalog("daily@03:00", "last=3", ZoneInfo("UTC"), "{not json")
    result = plan(facts(backups), broken)
    assert {v.outcome for v in result.verdicts} == {"skipped"}
    assert "named policies unavailable" in result.notes[0]


# --- orphan snapshots ----------------------------------------------------------------------------------
GONE_AMI = "ami-00000000000000de1"
LISTED_AMI = "ami-00000000000000115"
OTHER_AMI = "ami-000000000000000f0"
RETAGGED_AMI = "ami-00000000000000ee7"


def snapshot(snapshot_id: str, image_id: str | None, age: timedelta) -> Snapshot:
    description = (
        f"Created by CreateImage(i-0123456789abcdef0) for {image_id} from vol-0abc" if image_id else "copy"
    )
    return Snapshot(snapshot_id, description, NOW - age, "completed", {"amikeeper:managed-by": STACK})


def test_orphan_suspects_are_old_snapshots_whose_ami_is_not_listed() -> None:
    listed = image(WEB, day(0), image_id=LISTED_AMI)
    candidates = [
        snapshot("snap-orphan", GONE_AMI, timedelta(days=3)),
        snapshot("snap-young", GONE_AMI, timedelta(hours=2)),
        snapshot("snap-listed", LISTED_AMI, timedelta(days=3)),
        snapshot(listed.snapshot_ids[0], OTHER_AMI, timedelta(days=3)),
        snapshot("snap-nameless", None, timedelta(days=3)),
    ]
    suspects = orphan_suspects(candidates, [listed], NOW, timedelta(days=1))
    assert [s.snapshot_id for s in suspects] == ["snap-orphan"]


def test_suspect_whose_ami_still_exists_under_other_tags_is_not_an_orphan() -> None:
    regional = RegionFacts(
        images=(),
        instances={},
        snapshots=(
            snapshot("snap-orphan", GONE_AMI, timedelta(days=3)),
            snapshot("snap-retagged", RETAGGED_AMI, timedelta(days=3)),
        ),
        existing_image_ids=frozenset({RETAGGED_AMI}),
    )
    assert [s.snapshot_id for s in plan(regional).orphans] == ["snap-orphan"]


def test_image_id_is_read_from_the_createimage_description() -> None:
    assert snapshot("s", "ami-0123456789abcdef0", timedelta(0)).image_id == "ami-0123456789abcdef0"
    assert snapshot("s", None, timedelta(0)).image_id is None


# --- properties ----------------------------------------------------------------------------------------
STATES = st.sampled_from(["available", "available", "available", "pending", "failed"])


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Image], dict[str, tuple[str, ...]]]:
    count = draw(st.integers(min_value=1, max_value=25))
    offsets = draw(st.lists(st.integers(0, 400), min_size=count, max_size=count, unique=True))
    images = []
    in_use: dict[str, tuple[str, ...]] = {}
    for index, offset in enumerate(offsets):
        extra = {"Backup__Hold": "true"} if draw(st.booleans()) and index % 4 == 0 else {}
        made = image(WEB, day(offset), state=draw(STATES), image_id=f"ami-{index:017x}", **extra)
        images.append(made)
        if draw(st.integers(0, 9)) == 0:
            in_use[made.image_id] = ("instance i-1 (running)",)
    return images, in_use


@settings(max_examples=150, deadline=None)
@given(histories(), st.sampled_from(["last=2", "daily=3 weekly=2", "7", "14d", "monthly=1"]), st.randoms())
def test_plan_never_deletes_what_must_be_kept_and_ignores_input_order(
    history: tuple[list[Image], dict[str, tuple[str, ...]]], retention: str, shuffler: object
) -> None:
    images, in_use = history
    cat = catalog(retention=retention)
    result = plan(facts(images, [live(WEB)], in_use=in_use), cat)
    verdicts = by_id(result)
    available = [i for i in images if i.state == "available"]
    newest = max(available, key=lambda i: (i.backup_time, i.image_id)) if available else None
    for made in images:
        verdict = verdicts[made.image_id]
        if verdict.delete:
            assert made.state in ("available", "failed")
            assert made.tags.get("Backup:Hold") != "true"
            assert made.image_id not in in_use or made.state == "failed"
            assert newest is None or made.image_id != newest.image_id
        if made.state == "failed" and made.tags.get("Backup:Hold") != "true":
            assert verdict.outcome == "failed"
    shuffled = list(images)
    shuffler.shuffle(shuffled)  # type: ignore[attr-defined]
    assert outcomes(plan(facts(shuffled, [live(WEB)], in_use=in_use), cat)) == outcomes(result)


# --- the summary ---------------------------------------------------------------------------------------
def outcome_with(verdicts: Sequence[Verdict], **done: object) -> RegionOutcome:
    return RegionOutcome(REGION, plan=RetentionPlan(REGION, tuple(verdicts)), reference_check="scan", **done)  # type: ignore[arg-type]


def test_summary_is_info_with_a_row_per_region_and_the_ids_per_outcome() -> None:
    web = [image(WEB, day(n)) for n in range(5)]
    result_plan = plan(facts(web, [live(WEB)], in_use={web[4].image_id: ("launch configuration lc-1",)}))
    region = RegionOutcome(REGION, plan=result_plan, reference_check="scan", deleted=[web[3].image_id])
    region.snapshots_deleted.extend(web[3].snapshot_ids)
    note = retention_summary(RetentionResult(NOW, False, (region,)))
    assert (note.event, note.severity) == ("retention.summary", "info")
    assert note.subject == "amikeeper retention: 1 AMI(s) deleted in eu-west-1"
    assert note.table[1] == [REGION, "5", "3", "1", "1", "1", "0", "0", "0", "0", "0"]
    document = note.document()
    regional = document["regions"][0]
    assert regional["done"]["deleted"]["items"] == [web[3].image_id]
    assert regional["plan"]["kept_in_use"]["items"] == [
        {"image_id": web[4].image_id, "used_by": ["launch configuration lc-1"]}
    ]
    assert document["metrics"]["KeptInUse"] == 1
    assert f"{web[4].image_id} kept in use by launch configuration lc-1" in note.text()


def test_summary_with_errors_is_an_error_and_names_them() -> None:
    region = outcome_with([], errors=[ItemError("ami-0abc", "DeregisterImage", "RequestLimitExceeded")])
    failed_region = RegionOutcome("us-east-2", error="ClientError: UnauthorizedOperation")
    note = retention_summary(RetentionResult(NOW, False, (region, failed_region)))
    assert note.severity == "error"
    assert note.subject.endswith(", 2 error(s)")
    assert "eu-west-1: ami-0abc: DeregisterImage: RequestLimitExceeded" in note.text()
    assert "us-east-2: region failed: ClientError: UnauthorizedOperation" in note.text()
    assert note.table[2] == ["us-east-2", "-", "-", "-", "-", "-", "-", "-", "-", "-", "1"]


def test_dry_run_summary_says_what_would_be_deleted() -> None:
    web = [image(WEB, day(n)) for n in range(5)]
    region = RegionOutcome(REGION, plan=plan(facts(web, [live(WEB)])), reference_check="scan")
    note = retention_summary(RetentionResult(NOW, True, (region,)))
    assert note.subject == "amikeeper retention dry run: 2 AMI(s) would be deleted in eu-west-1"
    assert note.text().startswith("Retention dry run for 2026-11-29T04:00:00Z: 2 AMI(s) would be deleted")
    delete = note.document()["regions"][0]["plan"]["delete"]["items"]
    assert [item["image_id"] for item in delete] == [web[3].image_id, web[4].image_id]


def test_summary_of_a_huge_run_is_trimmed_to_fit_one_sns_message() -> None:
    # Given a region with 20,000 verdicts
    huge = [
        Verdict(f"ami-{n:017x}", WEB, NOW, "available", "kept", ("daily 2026-11-28",), (f"snap-{n:017x}",))
        for n in range(20_000)
    ]
    note = retention_summary(RetentionResult(NOW, False, (outcome_with(huge),)))
    # Then it still fits, and says how many ids were left out
    assert len(note.sns_message().encode()) <= SNS_MESSAGE_LIMIT
    kept = note.document()["regions"][0]["plan"]["kept"]
    assert kept["omitted"] == 20_000 - len(kept["items"])
    assert isinstance(note, Notification)


# --- pacing --------------------------------------------------------------------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_spends_its_burst_without_waiting_then_paces_at_the_refill_rate() -> None:
    fake = FakeTime()
    bucket = TokenBucket(clock=fake.clock, sleep=fake.sleep)
    for _ in range(100):
        bucket.acquire()
    assert fake.slept == []
    for _ in range(10):
        bucket.acquire()
    assert fake.slept == pytest.approx([0.2] * 10)
    assert bucket.waited_seconds == pytest.approx(2.0)


def test_bucket_refills_while_idle_up_to_its_capacity() -> None:
    fake = FakeTime()
    bucket = TokenBucket(clock=fake.clock, sleep=fake.sleep, capacity=10, refill_per_second=5)
    for _ in range(10):
        bucket.acquire()
    fake.now += 1.0
    assert bucket.tokens == pytest.approx(5)
    fake.now += 100
    assert bucket.tokens == pytest.approx(10)


def test_bucket_whose_sleep_returns_early_still_owes_the_token() -> None:
    fake = FakeTime()
    bucket = TokenBucket(clock=fake.clock, sleep=lambda seconds: None, capacity=1, refill_per_second=1)
    bucket.acquire()
    bucket.acquire()
    assert bucket.tokens == pytest.approx(-1)


@pytest.mark.parametrize(("capacity", "rate"), [(0, 5), (100, 0), (100, -1)])
def test_bucket_that_could_never_hand_out_a_token_is_refused(capacity: float, rate: float) -> None:
    with pytest.raises(InvalidBucketError):
        TokenBucket(clock=lambda: 0.0, sleep=lambda s: None, capacity=capacity, refill_per_second=rate)


def test_failed_backup_is_cleaned_up_even_if_something_names_it_but_a_hold_keeps_it() -> None:
    named = image(WEB, day(3), state="failed", image_id="ami-0named")
    held = image(WEB, day(4), state="failed", image_id="ami-0held", Backup__Hold="true")
    result = plan(
        facts([image(WEB, day(0)), named, held], [live(WEB)], in_use={"ami-0named": ("instance i-1",)})
    )
    assert by_id(result)["ami-0named"].outcome == "failed"
    assert by_id(result)["ami-0held"].outcome == "held"
