"""`make demo` runs to the end: chapter 5 shows an operator restoring a terminated instance through the CLI
(what they typed, what the CLI printed, the new instance next to the original), chapter 6 restore drills."""

from __future__ import annotations

import re

import pytest

from scripts import demo


@pytest.mark.slow
def test_the_demo_ends_with_a_terminated_instance_restored_through_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # When the whole demo runs
    demo.main()
    out = capsys.readouterr().out
    copies = out[out.index("=== 4. ") : out.index("=== 5. ")]
    chapter = out[out.index("=== 5. ") : out.index("=== 6. ")]
    drills = out[out.index("=== 6. ") :]

    # Then chapter 4 copied each of db-2's five backups to Frankfurt and to the vault, under the vault's key
    rows = re.findall(r"^  (ami-\w+) +(2027-\S+) +(ami-\w+|-) +(ami-\w+|-) +(.+)$", copies, re.M)
    made, after_retention = rows[:5], rows[5:]
    assert all(frankfurt != "-" and vault != "-" for _, _, frankfurt, vault, _ in made)
    assert {key for *_, key in made} == {"the vault's (alias/amikeeper-vault)"}
    assert "sources still shared with the vault after their copies completed: none" in copies
    # And retention kept Frankfurt's three newest (daily=3) and all five in the vault (daily=14)
    assert re.search(r"^  eu-central-1 +5 +3 +2$", copies, re.M)
    assert re.search(r"^  222233334444/eu-central-1 +5 +5 +0$", copies, re.M)
    assert [frankfurt != "-" for _, _, frankfurt, _, _ in after_retention] == [False, False, True, True, True]
    assert all(vault != "-" for _, _, _, vault, _ in after_retention)

    # Then the operator's status table shows the demo fleet as the CLI prints it
    assert "$ amikeeper status" in chapter
    assert "4 opted-in instance(s) of stack amikeeper at 2027-01-29T07:30:00Z" in chapter
    assert re.search(
        r"│ eu-west-1 │ i-\w+ +│ web-1 +│ default │ daily@03:00 │ ami-\w+ .*│ violation │", chapter
    )
    # And web-1 is terminated, a dry run changes nothing, and the restore waits for its status checks
    [web] = re.findall(r"web-1 \((i-\w+)\) is terminated by mistake", chapter)
    assert f"$ amikeeper restore {web} --dry-run" in chapter
    assert "Dry run: EC2 says the request would succeed; nothing was changed." in chapter
    assert f"$ amikeeper restore {web} --yes" in chapter
    assert "new instance running, status checks ok: done in 30s." in chapter
    assert "(exit code" not in chapter
    # And the restored instance runs in the original's subnet and security groups, with its Name
    rows = re.findall(
        r"^  (i-\w+) +(terminated|running) +(subnet-\w+) +(.+?) +none +none +(.+)$", chapter, re.M
    )
    [(original, _, subnet, groups, tags), (restored, _, new_subnet, new_groups, new_tags)] = rows
    assert (original, restored != web) == (web, True)
    assert (new_subnet, new_groups) == (subnet, groups)
    assert "Name=web-1" in tags and "Name=web-1, amikeeper:restored-from=ami-" in new_tags
    # And chapter 6 drilled the newest backups one at a time (which goes first follows the instance ids):
    # app-1's verified, batch-1's failed and reported
    [(first, second), (third,)] = [
        re.findall(r"05:00Z: started \['([\w-]+)'\], waiting \['([\w-]+)'\]", drills)[0],
        re.findall(r"05:30Z: started \['([\w-]+)'\], waiting none", drills),
    ]
    assert {first, second} == {"app-1", "batch-1"} and third == second
    assert re.search(r"^  app-1 +ami-\w+ +i-\w+ +t4g.micro +subnet-\w+ +terminated +verified ", drills, re.M)
    assert re.search(r"^  batch-1 +ami-\w+ +i-\w+ +t4g.micro +subnet-\w+ +terminated +failed ", drills, re.M)
    assert "drill instances left running: none" in drills
    assert drills.count("[restore.failed / error]") == 1
    assert re.search(r"verified +running=\d+s ok=\d+s", drills)
    assert '{"level"' not in drills, "handler logs go to CloudWatch, not the demo's reader"
    assert out.rstrip().endswith("no AWS account was used.")
