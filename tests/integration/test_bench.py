"""`make bench` itself is not part of the test suite; this checks that it runs and reads right, small."""

from __future__ import annotations

import pytest

from scripts import bench


def test_the_benchmark_runs_a_ten_instance_fleet_and_prints_an_exact_end_state(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When the benchmark runs a 10-instance fleet, plain and throttled, over three days
    status = bench.main(
        [
            "--sizes",
            "10",
            "--days",
            "3",
            "--throttled-size",
            "10",
            "--no-cold-start",
            "--day-sizes",
            "5",
            "--copy-sizes",
            "4",
        ]
    )
    # Then it succeeds, and its table shows the steady-state cycle against the target and an exact end state
    out = capsys.readouterr().out
    assert status == 0
    assert "EC2 calls per instance (backup + retention)" in out
    assert (
        "backup: ec2:CreateImage per instance" in out and "retention: ec2:DeregisterImage per instance" in out
    )
    assert "10/10 ✓" in out
    assert "planner peak RSS (fresh process, replayed)" in out and "MiB" in out
    assert "10 @30% throttled" in out
    # And a whole day at the defaults counts every function's EC2 calls, the AMI-state handler's too
    assert "A WHOLE DAY AT THE DEFAULTS" in out
    assert "5 instances, quiet day:" in out and "(target ≤ 2.2)" in out
    assert "AmiStateFunction" in out and "DescribeImages" in out
    assert 'messages: {"report.daily/info": 1}' in out
    # And the copies run reaches the floor: one CopyImage per copy, one DeregisterImage per expired copy
    assert "4 instances: 4 copies made, 4 expired copies deleted that day" in out
    assert "CopyImage per copy made 1.000 (floor 1); DeregisterImage per expired copy 1.000 (floor 1)" in out
