"""Rendering ``maskprep verify``'s result: one line per check, and the ``--json`` object."""

from __future__ import annotations

from typing import Any

from rich.table import Table

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
    from dataclasses import asdict

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
