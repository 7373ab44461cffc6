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
