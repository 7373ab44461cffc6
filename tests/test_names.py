"""Names several modules share are defined once, in modules that load without NumPy (the CLI
parses its options before anything heavy is imported)."""

from __future__ import annotations

import subprocess
import sys
import typing

from maskprep import config


def test_pack_forms_are_defined_once_and_match_their_type():
    from maskprep.cli import verify as verify_cli
    from maskprep.verifying import options

    assert typing.get_args(config.PackForm) == config.PACK_FORMS
    assert options.PACK_FORMS is config.PACK_FORMS
    assert verify_cli.PACK_FORMS is config.PACK_FORMS
    assert options.PADDING_SIDES is config.PADDING_SIDES


def test_the_collator_uses_the_same_names():
    import pytest

    pytest.importorskip("numpy")
    from maskprep import collate
    from maskprep.collate import collator, rows

    assert collate.PACK_FORMS is config.PACK_FORMS and collator.PACK_FORMS is config.PACK_FORMS
    assert rows.PADDING_SIDES is config.PADDING_SIDES


def test_the_names_load_without_numpy():
    code = (
        "import sys\n"
        "import maskprep.config, maskprep.verifying.options, maskprep.token_ids\n"
        "assert 'numpy' not in sys.modules, sorted(m for m in sys.modules if 'numpy' in m)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


#: How every check and probe is spelt, in inspect's and verify's reports and JSON alike.
SNAKE_CASE = r"[a-z][a-z0-9]*(_[a-z0-9]+)*"


def _snake_case_violations(names):
    import re

    return sorted(name for name in names if not re.fullmatch(SNAKE_CASE, name))


def test_check_and_probe_names_are_snake_case_in_inspect_and_verify():
    import pytest

    pytest.importorskip("numpy")
    from maskprep.inspecting import checks
    from maskprep.verifying import fed_labels, fed_mask, options, scan, tally

    inspect_names = set(checks.SPECS)
    verify_names = {
        *options.PROBES,
        *tally._LEAK_HINTS,
        scan.PADDING_ATTENDED,
        fed_mask.MASK_STRUCTURE,
        *fed_labels.LABEL_CHECKS,
    }
    assert len(inspect_names) > 20 and len(verify_names) == 10
    assert _snake_case_violations(inspect_names | verify_names) == []
    # The rule both commands run is one name in both reports.
    assert scan.PADDING_ATTENDED == checks.PADDING_ATTENDED


def test_the_name_rule_refuses_other_spellings():
    """Negative control: the spellings this rule replaced are refused."""
    spelt = ["padding-attended", "padAttended", "Pad_invariance", "labels__loss", "cross document"]
    assert _snake_case_violations(spelt) == sorted(spelt)
