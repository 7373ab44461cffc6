"""``maskprep inspect``: check shards against the contract and show what they hold; exit 1 when a
check fails."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import config as cfg
from ..token_ids import MAX_TOKEN_ID
from .command import Command, Report
from .common import (
    TOKEN_ID,
    buckets_option,
    standard_input,
    storage_options_option,
)


@click.command(cls=Command)
@click.argument("path", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@click.option("--sample", type=click.IntRange(min=1), help="Inspect N random rows, not all.")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of --sample."
)
@click.option(
    "--rows", "show_rows", type=click.IntRange(min=0), default=0, help="Decode the first N rows."
)
@click.option(
    "--row", "row_indices", type=click.IntRange(min=0), multiple=True, help="Decode row INDEX."
)
@click.option(
    "-t",
    "--tokenizer",
    help="Tokenizer (default: the manifest's): decodes --rows/--row; gives the EOS id and "
    "vocabulary size where the manifest has none, and without --model its model_max_length "
    "limits the rows.",
)
@click.option(
    "--model", help="Hold rows to this model's positions and vocabulary (Hub name or directory)."
)
@click.option("--revision", help="Revision of --model (branch, tag or commit) on the Hub.")
@click.option("--trust-remote-code", is_flag=True, help="Allow --model's own config code to run.")
@click.option(
    "--eos-id",
    type=TOKEN_ID,
    help="EOS id (default: the manifest's or the tokenizer's).",
)
@click.option(
    "--pad-id",
    type=TOKEN_ID,
    help="Pad id (default: the manifest's or the tokenizer's, else inferred).",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(1, MAX_TOKEN_ID + 1),
    help="Token ids must lie below this (default: the manifest's or the tokenizer's).",
)
@click.option(
    "--strategy",
    type=click.Choice(cfg.STRATEGIES),
    help="Shape to hold rows to (default: the manifest's, else inferred).",
)
@click.option("--buckets", callback=buckets_option, help="Bucket widths, e.g. 64,128,256.")
@click.option(
    "--max-pad-fraction",
    type=click.FloatRange(0, 1),
    help="Warn when padding exceeds this fraction of positions.",
)
@click.option(
    "--min-label-fraction",
    type=click.FloatRange(0, 1),
    help="Warn when trained tokens are below this fraction of real tokens.",
)
@click.option(
    "--no-hash-check",
    is_flag=True,
    help="Do not compare each shard's sha256 with the manifest (saves reading the files twice).",
)
@storage_options_option
def inspect(**options: Any) -> Report:
    """Check shards against the data contract and show what they hold.

    PATH is a build output directory, a directory of shards without a manifest, one
    .parquet/.arrow shard (each may be a URL: s3://bucket/out), or - for Arrow IPC (stream or
    file) on stdin. Exit code 1 when a check fails (or warns, with --strict).
    """
    from ..inspecting.driver import inspect as run_inspect
    from ..inspecting.options import InspectOptions
    from ..sources.inputs import STDIN
    from .inspect_report import inspect_json, print_inspect

    settings = InspectOptions(
        sample=options["sample"],
        seed=options["seed"],
        strategy=options["strategy"],
        buckets=options["buckets"],
        pad_id=options["pad_id"],
        eos_id=options["eos_id"],
        vocab_size=options["vocab_size"],
        tokenizer=options["tokenizer"],
        max_pad_fraction=options["max_pad_fraction"],
        min_label_fraction=options["min_label_fraction"],
        show_rows=options["show_rows"],
        row_indices=tuple(options["row_indices"]),
        check_hashes=not options["no_hash_check"],
        model=options["model"],
        model_revision=options["revision"],
        trust_remote_code=options["trust_remote_code"],
        storage_options=options["storage_options"],
    )
    stdin = standard_input() if options["path"] == STDIN else None
    result = run_inspect(options["path"], settings, stdin=stdin)
    strict = options["strict"]

    def show() -> None:
        from rich.console import Console

        # Piped output is read in logs and editors, wider than rich's 80-column default.
        console = Console(file=sys.stdout)
        if not console.is_terminal:
            console = Console(file=sys.stdout, width=120)
        print_inspect(console, result, strict)

    return Report(inspect_json(result, strict), show, ok=result.passes(strict))
