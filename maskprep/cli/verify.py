"""``maskprep verify``: probe a real model with sampled rows; exit 1 on a leak. Its result
rendered: one line per check, and the ``--json`` object."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from ..config import PACK_FORMS
from ..errors import ConfigError
from ..verifying.options import (
    ATTN_IMPLEMENTATIONS,
    COLLATE_COLUMNS,
    DEVICES,
    DTYPES,
    MAX_SEED,
    ROWS_ALL,
)
from .common import (
    TOKEN_ID,
    Command,
    Parsed,
    Report,
    config_from,
    standard_input,
    storage_options_option,
)

if TYPE_CHECKING:
    from rich.table import Table


def _name_list(choices: tuple[str, ...]) -> Parsed:
    """The type of an option that takes a comma-separated list of names from ``choices``."""

    def parse(value: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise ConfigError(
                f"{', '.join(unknown) or 'nothing given'}: choose from {', '.join(choices)}"
            )
        return names

    return Parsed(parse)


class _Rows(click.ParamType):
    """``--rows``: a number of rows (at least 1), or ``all``."""

    name = "N|all"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """``value`` as an int of at least 1, or ``"all"``."""
        if isinstance(value, int) or str(value).strip() == ROWS_ALL:
            return value if isinstance(value, int) else ROWS_ALL
        try:
            number = int(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is neither a number of rows nor {ROWS_ALL!r}", param, ctx)
        if number < 1:
            self.fail(f"{number} is not at least 1 (or {ROWS_ALL!r})", param, ctx)
        return number


_ROWS = _Rows()


@click.command(cls=Command)
@click.argument("path", metavar="PATH")
@click.option("-m", "--model", required=True, help="Model: Hub name or local directory.")
@click.option("--revision", help="Model revision (branch, tag or commit) on the Hub.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own code to run.")
@click.option(
    "--from-config", is_flag=True, help="Build the model from its config with random weights."
)
@click.option(
    "--num-layers", type=click.IntRange(min=1), help="With --from-config: keep this many layers."
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="auto: cuda when available.",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="auto",
    show_default=True,
    help="auto: bfloat16 (or float16) on cuda, float32 on cpu.",
)
@click.option(
    "--attn-implementation",
    "attn_implementations",
    type=_name_list(ATTN_IMPLEMENTATIONS),
    help="Comma-separated; each available one is probed, the others reported as skipped "
    "(default: all three on cuda; on cpu the one the model is set to).",
)
@click.option(
    "--pack-forms",
    type=_name_list(PACK_FORMS),
    help="Collator forms probed on packed rows (default: position_ids,mask4d for decoders, "
    "mask4d for encoders; mask2d is the leaky diagnostic).",
)
@click.option(
    "--pad-position-ids/--no-pad-position-ids",
    default=None,
    help="Feed padded rows position_ids counted over real tokens (default: as the collator "
    "does, for absolute-position models).",
)
@click.option(
    "--rows",
    type=_ROWS,
    default="8",
    show_default=True,
    help="Rows sampled at random, or 'all' to probe every row (each costs what a sampled one "
    "does).",
)
@click.option(
    "--longest",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Rows added for reaching farthest into the model's positions.",
)
@click.option("--pad-id", type=TOKEN_ID, help="Pad id (default: manifest, rows).")
@click.option(
    "--padding-side",
    type=click.Choice(("left", "right")),
    help="Side padded rows are padded on (default: manifest, rows).",
)
@click.option(
    "--packed/--no-packed",
    default=None,
    help="Whether rows are packs (default: manifest, else seq_lens/position_ids columns).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=0,
    show_default=True,
    help="Sampling and noise seed.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--collate",
    metavar="SPEC",
    help="Probe the batches of this collate function instead of maskprep's collator: "
    "path/to/file.py:NAME or package.module:NAME (a list of row dicts -> model keyword "
    "arguments, as Trainer(data_collator=) takes).",
)
@click.option(
    "--collate-columns",
    type=click.Choice(COLLATE_COLUMNS),
    default="forward",
    show_default=True,
    help="Columns --collate's function is handed: those model.forward names, as "
    "transformers.Trainer hands them at its defaults, or all (a DataLoader, or "
    "remove_unused_columns=False).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@storage_options_option
def verify(**options: Any) -> Report:
    """Prove on a real model that the masks of the rows at PATH do not leak.

    PATH is what inspect reads: a build output directory, a directory of shards without a
    manifest, one .parquet/.arrow shard (each may be a URL: s3://bucket/out), or - for Arrow IPC
    on stdin. Samples rows (and the
    longest ones), checks they fit the model's positions and vocabulary, feeds them through
    maskprep.collate as training would, and runs five probes (pad invariance, unpadded
    reference, label leakage, cross-document, causal) under each attention implementation.
    With --collate, the batches of your collate function are probed instead, against what
    the output says each row holds. Exit 1 when any probe sees a leak or a row does not fit the
    model.
    """
    from ..verifying.driver import verify as run_verify
    from ..verifying.options import VerifyOptions

    if options["collate"] is not None:
        for name, flag in (
            ("pack_forms", "--pack-forms"),
            ("pad_position_ids", "--pad-position-ids"),
        ):
            if options[name] is not None:
                raise click.UsageError(
                    f"{flag} sets up maskprep's collator; with --collate your function decides "
                    "what the model is fed"
                )
    elif options["collate_columns"] != "forward":
        raise click.UsageError("--collate-columns needs --collate")
    # Progress only where someone watches it.
    progress = sys.stderr is not None and sys.stderr.isatty()
    settings = config_from(VerifyOptions, options, progress=progress)
    stdin = standard_input() if options["path"] == "-" else None
    result = run_verify(
        options["path"], options["model"], settings, stdin=stdin, collate=options["collate"]
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)

    def show() -> None:
        from rich.console import Console

        # Logs and pipes get a wide table rather than rich's 80-column default.
        width = None if sys.stdout.isatty() else 160
        Console(file=sys.stdout, width=width).print(verify_table(result))
        for line in fix_lines(result):
            click.echo(line)

    return Report(verify_json(result), show, ok=result.ok)


_STATUS_STYLE = {"pass": "green", "LEAK": "bold red", "inconclusive": "yellow", "skipped": "dim"}
#: The ``maskprep verify`` option that checks a fix (by :attr:`ProbeResult.fix`), for LEAK notes.
FIX_OPTIONS = {
    "pad_position_ids": "--pad-position-ids",
    "pack_form": "--pack-forms mask4d",
}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def verify_table(result: Any) -> Table:
    """One line per check of a :class:`maskprep.verifying.results.VerifyResult`."""
    from rich.table import Table

    verdict = "no leak found" if result.ok else "LEAK FOUND"
    rows = rows_probed(result)
    fed = f" · fed by {result.collate}" if result.collate else ""
    reach = ""
    if result.reach is not None:
        reach = f" · reach {result.reach}"
        if result.position_limit is not None:
            reach += f" of {result.position_limit} positions"
    table = Table(
        title=(
            f"{verdict} · maskprep verify · {result.model} ({result.kind}) · {result.device} · "
            f"{result.dtype}{fed} · {rows}{reach} · {result.elapsed_s:.1f} s"
        ),
        title_justify="left",
    )
    table.add_column("probe", overflow="fold")
    table.add_column("attention · form", overflow="fold")
    table.add_column("status", no_wrap=True)
    for name in ("max diff", "tolerance", "positions", "leaking", "worst row", "planted leak"):
        table.add_column(name, justify="right", overflow="fold")
    table.add_column("note", ratio=1)
    for check in result.checks:
        style = _STATUS_STYLE.get(check.status, "")
        table.add_row(
            check.probe,
            f"{check.attn_implementation} · {check.form}",
            f"[{style}]{check.status}[/]",
            _num(check.max_diff),
            _num(check.tolerance),
            f"{check.positions:,}",
            f"{check.leaking:,}",
            "-" if check.worst_row is None else str(check.worst_row),
            _num(check.control_diff),
            check.note,
        )
    return table


def rows_probed(result: Any) -> str:
    """How many rows were probed, of how many, and whether they were a sample: ``sampled 10 of
    190 rows (2 longest)``, ``all 190 rows``."""
    longest = f" ({len(result.longest)} longest)" if result.longest else ""
    if result.total_rows is None:
        return f"{len(result.rows)} rows{longest}"
    if not result.sampled:
        return f"all {result.total_rows:,} rows"
    return f"sampled {len(result.rows):,} of {result.total_rows:,} rows{longest}"


def fix_lines(result: Any) -> list[str]:
    """Lines for under the table: the verify option that tries the fix a LEAK names, the
    collator to train with when a caller's collate function leaked, and what a sample cannot
    see."""
    leaks = [c for c in result.checks if c.status == "LEAK"]
    options = {FIX_OPTIONS[c.fix] for c in leaks if c.fix in FIX_OPTIONS}
    lines = [f"fix to try: maskprep verify ... {option}" for option in sorted(options)]
    if result.collate and any(c.fix == "collator" for c in leaks):
        source = result.source or "OUT"
        lines.append(
            f"fix: train with Collator.for_output({source!r}, model=model) (maskprep verify "
            f"{source} --model ... checks that feed)"
        )
    if result.sampled:
        lines.append(
            f"{rows_probed(result)}: a defect in one row is seen only if that row is drawn; "
            "--rows all probes every row"
        )
    return lines


def verify_json(result: Any) -> dict[str, Any]:
    """The object ``maskprep verify --json`` prints (``ok`` added by the command): model, kind,
    device, dtype, the collate function probed, rows (which, of how many, sampled or not),
    reach, warnings, checks."""
    return {
        "model": result.model,
        "kind": result.kind,
        "device": result.device,
        "dtype": result.dtype,
        "collate": result.collate or None,
        "packed": result.packed,
        "sampled": result.sampled,
        "total_rows": result.total_rows,
        "rows": list(result.rows),
        "longest": list(result.longest),
        "reach": result.reach,
        "position_limit": result.position_limit,
        "warnings": list(result.warnings),
        "elapsed_s": round(result.elapsed_s, 3),
        "checks": [asdict(check) for check in result.checks],
    }
