"""checkov on the SAM-translated template: every finding is fixed or skipped with a reason in
.checkov.yaml, and every skip there is still needed. `make scan` runs the same scan for `make test`:

    python -m tests.integration.test_template_checkov OUT.json   # writes the translated template
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.integration.test_template import APP, translate

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CONFIG = ROOT / ".checkov.yaml"
# An e-mail address, so that the conditional subscription is scanned too.
SCANNED_PARAMETERS = {"NotificationEmail": "ops@example.com"}


def write_translated_template(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(translate(APP.template, SCANNED_PARAMETERS), indent=1, default=str))


def checkov(template: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV} (make install creates .venv-checkov)")
    # BC_SKIP_MAPPING: no call home for the guidelines mapping (there is no network here, nor should be).
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    return subprocess.run(
        [str(CHECKOV), "--skip-download", "-f", str(template), *arguments],
        # Not ROOT: checkov would read .checkov.yaml there on its own.
        cwd=template.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def skipped_checks() -> list[str]:
    return list(yaml.safe_load(CONFIG.read_text())["skip-check"])


@pytest.fixture(scope="module")
def translated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("checkov") / "template.json"
    write_translated_template(path)
    return path


def test_checkov_finds_no_undecided_issue(translated_template: Path) -> None:
    result = checkov(translated_template, "--config-file", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_skip_is_still_needed_and_every_finding_is_skipped_or_fixed(translated_template: Path) -> None:
    # Without the config, checkov's findings are exactly the skipped checks: none undecided, none stale.
    result = checkov(translated_template, "--framework", "cloudformation", "--output", "json", "--quiet")
    report: Any = json.loads(result.stdout)
    failed = {check["check_id"] for check in report["results"]["failed_checks"]}
    assert failed == set(skipped_checks())


def test_every_skip_has_its_own_entry_and_a_reason_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    entries = [n for n, line in enumerate(lines) if re.fullmatch(r"  - CKV2?_\w+", line)]
    assert len(entries) == len(skipped_checks()) == len(set(skipped_checks()))
    assert all(lines[n - 1].lstrip().startswith("# ") for n in entries)


if __name__ == "__main__":
    write_translated_template(Path(sys.argv[1]))
