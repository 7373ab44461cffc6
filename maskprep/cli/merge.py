"""``maskprep merge``: finished array-job parts joined into one output."""

from __future__ import annotations

from typing import Any

import click

from .common import Command, Report, output_option, storage_options_option


@click.command(cls=Command)
@click.argument("parts", nargs=-1, required=True, metavar="PART_DIR...")
@output_option
@click.option("--overwrite", is_flag=True, help="Replace a previous maskprep output in DIR.")
@click.option(
    "--check-input-bytes",
    is_flag=True,
    help="Read every input again and check the bytes each part read against the sha256 it "
    "recorded (one full read of the inputs): catches an input rewritten between part builds "
    "with its size and modification time kept.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@storage_options_option
def merge(
    parts: tuple[str, ...],
    output: str,
    overwrite: bool,
    check_input_bytes: bool,
    as_json: bool,
    storage_options: Any,
) -> Report:
    """Join the finished parts of an array build (--num-parts/--part-index) into one output.

    Shards are hard-linked, not copied (copied only across filesystems, and server-side on an
    object store); the parts must come from one config and tokenizer, every part 0..N-1 exactly
    once. Parts and output may be object-store URLs (s3://bucket/part-0).
    """
    from ..distributed.merge import merge as run_merge

    result = run_merge(
        parts,
        output,
        overwrite=overwrite,
        storage_options=storage_options,
        check_input_bytes=check_input_bytes,
    )
    summary = {
        "output": str(result.output),
        "parts": result.parts,
        "shards": result.shards,
        "linked": result.linked,
        "copied": result.copied,
        "rows_written": result.manifest.totals.rows_written,
    }

    def show() -> None:
        click.echo(
            f"merged {result.parts} parts into {result.output}: {result.shards} shards "
            f"({result.linked} linked, {result.copied} copied), "
            f"{summary['rows_written']} rows"
        )

    return Report(summary, show)
