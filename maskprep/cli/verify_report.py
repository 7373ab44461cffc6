"""Rendering ``maskprep verify``'s result: one line per check, and the ``--json`` object."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_STATUS_STYLE = {"pass": "green", "LEAK": "bold red", "inconclusive": "yellow", "skipped": "dim"}
#: The ``maskprep verify`` option that checks a fix (by :attr:`Check.fix`), for LEAK notes.
FIX_OPTIONS = {
    "pad_position_ids": "--pad-position-ids",
    "pack_form": "--pack-forms mask4d",
}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def verify_table(result: Any) -> Table:
    """One line per check of a :class:`maskprep.probes.results.VerifyResult`."""
    verdict = "no leak found" if result.ok else "LEAK FOUND"
    rows = f"{len(result.rows)} rows"
    if result.longest:
        rows += f" ({len(result.longest)} longest)"
    reach = ""
    if result.reach is not None:
        reach = f" · reach {result.reach}"
        if result.position_limit is not None:
            reach += f" of {result.position_limit} positions"
    table = Table(
        title=(
            f"{verdict} · maskprep verify · {result.model} ({result.kind}) · {result.device} · "
            f"{result.dtype} · {rows}{reach} · {result.elapsed_s:.1f} s"
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


def fix_lines(result: Any) -> list[str]:
    """One line per verify option that tries the fix a LEAK names, for under the table."""
    options = {
        FIX_OPTIONS[c.fix] for c in result.checks if c.status == "LEAK" and c.fix in FIX_OPTIONS
    }
    return [f"fix to try: maskprep verify ... {option}" for option in sorted(options)]


def verify_json(result: Any) -> dict[str, Any]:
    """The object ``maskprep verify --json`` prints: ok, device, dtype, rows, warnings, checks."""
    from dataclasses import asdict

    return {
        "ok": result.ok,
        "model": result.model,
        "kind": result.kind,
        "device": result.device,
        "dtype": result.dtype,
        "packed": result.packed,
        "rows": list(result.rows),
        "longest": list(result.longest),
        "reach": result.reach,
        "position_limit": result.position_limit,
        "warnings": list(result.warnings),
        "elapsed_s": round(result.elapsed_s, 3),
        "checks": [asdict(check) for check in result.checks],
    }
