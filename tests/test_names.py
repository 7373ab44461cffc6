"""Names several modules share are defined once, in modules that load without NumPy (the CLI
parses its options before anything heavy is imported)."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

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
    from maskprep.verifying import fed_checks, options, results, sampling

    inspect_names = set(checks.SPECS)
    verify_names = {
        *options.PROBES,
        *results._LEAK_HINTS,
        sampling.PADDING_ATTENDED,
        fed_checks.MASK_STRUCTURE,
        *fed_checks.LABEL_CHECKS,
    }
    assert len(inspect_names) > 20 and len(verify_names) == 10
    assert _snake_case_violations(inspect_names | verify_names) == []
    # The rule both commands run is one name in both reports.
    assert sampling.PADDING_ATTENDED == checks.PADDING_ATTENDED


def test_the_name_rule_refuses_other_spellings():
    """Negative control: the spellings this rule replaced are refused."""
    spelt = ["padding-attended", "padAttended", "Pad_invariance", "labels__loss", "cross document"]
    assert _snake_case_violations(spelt) == sorted(spelt)


@pytest.mark.parametrize(
    ("choices", "kind"),
    [
        ("INPUT_FORMATS", "InputFormat"),
        ("BAD_RECORD_POLICIES", "BadRecordPolicy"),
        ("STRATEGIES", "Strategy"),
        ("PACK_ALGORITHMS", "PackAlgorithm"),
        ("OVERFLOWS", "Overflow"),
        ("PADDING_SIDES", "PaddingSide"),
        ("SHARD_FORMATS", "ShardFormat"),
        ("PACK_FORMS", "PackForm"),
        ("TRAIN_ON", "TrainOn"),
    ],
)
def test_every_choice_tuple_is_its_literal(choices, kind):
    assert getattr(config, choices) == typing.get_args(getattr(config, kind))


def _config(**changes):
    output = {"directory": "out", **changes.pop("output", {})}
    source = {"inputs": ("in.jsonl",), **changes.pop("source", {})}
    shape = {"max_length": 64, **changes.pop("shape", {})}
    return config.BuildConfig(
        source=config.SourceConfig(**source),
        tokenizer=config.TokenizerConfig("tok"),
        shape=config.ShapeConfig(**shape),
        output=config.OutputConfig(**output),
        **changes,
    )


def test_the_manifest_leaves_out_exactly_the_fields_marked_so():
    import dataclasses

    marked = {
        f"{owner.__name__}.{spec.name}"
        for owner in (
            config.SourceConfig,
            config.ShapeConfig,
            config.OutputConfig,
            config.BuildConfig,
        )
        for spec in dataclasses.fields(owner)
        if spec.metadata == config.NOT_RECORDED
    }
    assert marked == {
        "SourceConfig.max_record_bytes",
        "SourceConfig.max_rejects",
        "ShapeConfig.max_truncated",
        "OutputConfig.directory",
        "OutputConfig.overwrite",
        "OutputConfig.resume",
        "BuildConfig.part",
    }
    changed = _config(
        source={
            "on_bad_record": "skip",
            "max_record_bytes": 10,
            "max_rejects": config.RejectLimit(1),
        },
        shape={"max_truncated": 0.5},
        output={"directory": "elsewhere", "resume": True},
        part=config.PartSpec(index=1, count=2),
    )
    base = _config(source={"on_bad_record": "skip"})
    assert changed.to_manifest() == base.to_manifest()
    recorded = base.to_manifest()
    assert not {"max_record_bytes", "max_rejects"} & set(recorded["source"])
    assert "max_truncated" not in recorded["shape"] and "part" not in recorded
    assert not {"directory", "overwrite", "resume"} & set(recorded["output"])
    # Negative control: a field that is recorded does change the manifest.
    assert _config(output={"compression": "none"}).to_manifest() != _config().to_manifest()
