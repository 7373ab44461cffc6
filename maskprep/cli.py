"""The ``maskprep`` command: parse options, call the library, render results. No logic here."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from . import config as cfg
from ._version import __version__
from .errors import MaskprepError


class _Failure(click.ClickException):
    """A library error shown as one line on stderr, with its own exit code."""

    def __init__(self, error: MaskprepError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


def _library_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MaskprepError as error:
            raise _Failure(error) from None

    return wrapper


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return cfg.parse_size(value)
    except MaskprepError as error:
        raise click.BadParameter(str(error)) from None


def _buckets(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return cfg.parse_buckets(value)
    except MaskprepError as error:
        raise click.BadParameter(str(error)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maskprep")
def main() -> None:
    """Turn raw text into padded, masked training shards, and check that nothing leaks."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-t", "--tokenizer", required=True, help="Hub name or local directory.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Output dir.")
@click.option("--max-length", required=True, type=click.IntRange(min=1), help="Row length.")
@click.option(
    "--strategy",
    type=click.Choice(cfg.STRATEGIES),
    default="pad",
    show_default=True,
    help="pad: every row --max-length; bucket: smallest bucket that fits; pack: documents "
    "concatenated into --max-length rows; none: no padding.",
)
@click.option(
    "--overflow",
    type=click.Choice(cfg.OVERFLOWS),
    default="truncate",
    show_default=True,
    help="What to do with documents longer than --max-length.",
)
@click.option(
    "--stride",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Tokens shared by consecutive windows with --overflow split.",
)
@click.option(
    "--buckets",
    callback=_buckets,
    help="With --strategy bucket: row lengths, e.g. 64,128,256 (--max-length is always one). "
    "Default: powers of two from 64.",
)
@click.option(
    "--pack-algorithm",
    type=click.Choice(cfg.PACK_ALGORITHMS),
    default="greedy",
    show_default=True,
    help="With --strategy pack: greedy keeps input order; bfd (best-fit decreasing) fills better.",
)
@click.option(
    "--pack-window",
    type=click.IntRange(min=1),
    default=cfg.DEFAULT_PACK_WINDOW,
    show_default=True,
    help="With --pack-algorithm bfd: documents regrouped at a time.",
)
@click.option("--padding-side", type=click.Choice(cfg.PADDING_SIDES), help="Default: tokenizer's.")
@click.option(
    "--input-format",
    type=click.Choice(cfg.INPUT_FORMATS),
    default="auto",
    show_default=True,
    help="auto: from the extension, else sniffed from the first line.",
)
@click.option(
    "--text-field",
    default="text",
    show_default=True,
    help="JSONL field holding the text; dotted for nested (meta.body).",
)
@click.option(
    "--on-bad-record",
    type=click.Choice(cfg.BAD_RECORD_POLICIES),
    default="fail",
    show_default=True,
    help="fail: stop at the first bad record; skip: write it to rejects.jsonl and go on.",
)
@click.option("--revision", help="Tokenizer revision (branch, tag or commit) on the Hub.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the tokenizer's own code to run.")
@click.option("--pad-token", help="'eos' to pad with EOS, or a token of the vocabulary.")
@click.option(
    "--add-special-tokens/--no-add-special-tokens",
    default=True,
    show_default=True,
    help="Frame documents with the tokenizer's special tokens (BOS, [CLS]…[SEP]).",
)
@click.option(
    "--add-eos/--no-add-eos",
    default=None,
    help="Append EOS to every document unless already there. "
    "Default: on after prompt/completion records' completions, off otherwise.",
)
@click.option(
    "--format",
    "shard_format",
    type=click.Choice(cfg.SHARD_FORMATS),
    default="parquet",
    show_default=True,
)
@click.option("--shard-rows", type=click.IntRange(min=1), help="Roll shards at this many rows.")
@click.option("--shard-size", callback=_size, help="Roll shards at this size (e.g. 256M, 1G).")
@click.option("--overwrite", is_flag=True, help="Replace a previous maskprep output in DIR.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Documents encoded per batch.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary table.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--prompt-field", help="SFT: JSONL field holding the prompt (not trained).")
@click.option("--completion-field", help="SFT: JSONL field holding the completion (trained).")
@click.option("--train-on-prompt", is_flag=True, help="SFT: train the prompt's tokens too.")
@click.option(
    "--messages-field", help="Chat: JSONL field holding a list of {role, content} messages."
)
@click.option(
    "--chat-template",
    type=click.Path(dir_okay=False),
    help="Chat: Jinja template file to use instead of the tokenizer's.",
)
@click.option(
    "--train-on",
    type=click.Choice(cfg.TRAIN_ON),
    help="Chat: which turns are trained.  [default: assistant]",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Finish an interrupted build in DIR, reusing its complete shards (output identical "
    "to an uninterrupted build).",
)
@click.option(
    "--num-shards",
    type=click.IntRange(min=1),
    help="Array jobs: split the input into this many parts (with --shard-index).",
)
@click.option(
    "--shard-index",
    type=click.IntRange(min=0),
    help="Array jobs: build only this part (0-based); join the parts with maskprep merge.",
)
@click.option(
    "--engine",
    type=click.Choice(("local", "ray")),
    default="local",
    show_default=True,
    help="ray: build --num-shards parts (default: one per cluster CPU) on the Ray cluster in "
    "RAY_ADDRESS, or a local one, and merge them.",
)
@click.option(
    "--num-proc",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Encoding processes. 1: this process, the tokenizer's own threads on every core; "
    "N: N single-threaded worker processes. Never changes the output.",
)
@click.option(
    "--tokenizer-cache",
    type=click.Path(file_okay=False),
    envvar="MASKPREP_TOKENIZER_CACHE",
    show_envvar=True,
    help="Where local tokenizers are cached for plain-text builds, so that later builds start "
    "without loading transformers. Never changes the output.  "
    "[default: $XDG_CACHE_HOME/maskprep/tokenizers or ~/.cache/maskprep/tokenizers]",
)
@click.option(
    "--no-tokenizer-cache",
    is_flag=True,
    help="Load the tokenizer through transformers and cache nothing.",
)
@_library_errors
def build(**options: Any) -> None:
    """Tokenize text or JSONL into padded, bucketed or packed shards with masks and labels.

    INPUT... are text or JSONL files, directories, globs, or - for stdin. Writes
    DIR/data-NNNNN.parquet shards with input_ids, attention_mask, labels (-100 where a position
    is not trained) and length (packs add position_ids and seq_lens), then DIR/maskprep.json last.
    """
    from .pipeline import build as run_build
    from .report import ProgressReporter, build_json, build_summary
    from .tokenizing.pool import Parallelism

    config = cfg.BuildConfig(
        source=cfg.SourceConfig(
            inputs=tuple(options["inputs"]),
            input_format=options["input_format"],
            text_field=options["text_field"],
            on_bad_record=options["on_bad_record"],
        ),
        tokenizer=cfg.TokenizerConfig(
            name_or_path=options["tokenizer"],
            revision=options["revision"],
            trust_remote_code=options["trust_remote_code"],
            pad_token=options["pad_token"],
            add_special_tokens=options["add_special_tokens"],
            add_eos=options["add_eos"],
            padding_side=options["padding_side"],
        ),
        shape=cfg.ShapeConfig(
            max_length=options["max_length"],
            strategy=options["strategy"],
            overflow=options["overflow"],
            stride=options["stride"],
            buckets=options["buckets"],
            pack_algorithm=options["pack_algorithm"],
            pack_window=options["pack_window"],
        ),
        output=cfg.OutputConfig(
            directory=options["output"],
            format=options["shard_format"],
            shard_rows=options["shard_rows"],
            shard_size=options["shard_size"],
            overwrite=options["overwrite"],
            resume=options["resume"],
        ),
        batch_size=options["batch_size"],
        sft=_sft_config(options),
        part=_part_spec(options) if options["engine"] == "local" else None,
    )
    quiet = options["quiet"] or options["as_json"]
    if options["engine"] == "ray":
        from .distributed.ray_engine import build_with_ray

        if options["shard_index"] is not None:
            raise click.UsageError("--shard-index does not apply to --engine ray")
        result = build_with_ray(
            config, parts=options["num_shards"], tokenizer_cache=_tokenizer_cache(options)
        )
    else:
        with ProgressReporter(quiet=quiet) as reporter:
            result = run_build(
                config,
                on_progress=reporter.callback,
                parallelism=Parallelism(num_proc=options["num_proc"]),
                tokenizer_cache=_tokenizer_cache(options),
            )
    if options["as_json"]:
        click.echo(json.dumps(build_json(result), indent=2))
    elif not options["quiet"]:
        from rich.console import Console

        Console(file=sys.stdout).print(build_summary(result))


def _tokenizer_cache(options: dict[str, Any]) -> Any:
    from pathlib import Path

    from .tokenizing.cache import TokenizerCache, default_cache_dir

    if options["no_tokenizer_cache"]:
        return None
    chosen = options["tokenizer_cache"]
    return TokenizerCache(Path(chosen) if chosen else default_cache_dir())


def _sft_config(options: dict[str, Any]) -> cfg.SFTConfig | None:
    names = ("prompt_field", "completion_field", "messages_field")
    extras = ("train_on_prompt", "train_on", "chat_template")
    if not any(options[n] is not None for n in names):
        given = [f"--{n.replace('_', '-')}" for n in extras if options[n]]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: only for SFT records; "
                "give --prompt-field/--completion-field or --messages-field"
            )
        return None
    return cfg.SFTConfig(
        prompt_field=options["prompt_field"],
        completion_field=options["completion_field"],
        messages_field=options["messages_field"],
        train_on_prompt=options["train_on_prompt"],
        train_on=options["train_on"] or "assistant",
        chat_template=options["chat_template"],
    )


def _part_spec(options: dict[str, Any]) -> cfg.PartSpec | None:
    count, index = options["num_shards"], options["shard_index"]
    if count is None and index is None:
        return None
    if count is None or index is None:
        raise click.UsageError("--num-shards and --shard-index go together")
    return cfg.PartSpec(index=index, count=count)


@main.command()
@click.argument("parts", nargs=-1, required=True, metavar="PART_DIR...")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Output dir.")
@click.option("--overwrite", is_flag=True, help="Replace a previous maskprep output in DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@_library_errors
def merge(parts: tuple[str, ...], output: str, overwrite: bool, as_json: bool) -> None:
    """Join the finished parts of an array build (--num-shards/--shard-index) into one output.

    Shards are hard-linked, not copied (copied only across filesystems); the parts must come from
    one config and tokenizer, every part 0..N-1 exactly once.
    """
    from .distributed.merge import merge as run_merge

    result = run_merge(parts, output, overwrite=overwrite)
    summary = {
        "output": str(result.output),
        "parts": result.parts,
        "shards": result.shards,
        "linked": result.linked,
        "copied": result.copied,
        "rows_written": result.manifest["totals"]["rows_written"],
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"merged {result.parts} parts into {result.output}: {result.shards} shards "
            f"({result.linked} linked, {result.copied} copied), "
            f"{summary['rows_written']} rows"
        )


def _name_list(choices: tuple[str, ...]) -> Callable[..., tuple[str, ...]]:
    """A Click callback reading a comma-separated list of names from ``choices``."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise click.BadParameter(
                f"{', '.join(unknown) or 'nothing given'}: choose from {', '.join(choices)}"
            )
        return names

    return parse


@main.command()
@click.argument("path", type=click.Path(file_okay=False))
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
    type=click.Choice(("auto", "cuda", "cpu")),
    default="auto",
    show_default=True,
    help="auto: cuda when available.",
)
@click.option(
    "--dtype",
    type=click.Choice(("auto", "float32", "bfloat16", "float16")),
    default="auto",
    show_default=True,
    help="auto: bfloat16 (or float16) on cuda, float32 on cpu.",
)
@click.option(
    "--attn-implementation",
    "attn_implementations",
    default="eager,sdpa,flash_attention_2",
    show_default=True,
    callback=_name_list(("eager", "sdpa", "flash_attention_2")),
    help="Comma-separated; each available one is probed, the others reported as skipped.",
)
@click.option(
    "--pack-forms",
    callback=_name_list(("position_ids", "mask4d", "mask2d")),
    help="Collator forms probed on packed rows (default: position_ids,mask4d for decoders, "
    "mask4d for encoders; mask2d is the leaky diagnostic).",
)
@click.option(
    "--pad-position-ids",
    is_flag=True,
    help="Feed padded rows position_ids counted over real tokens (left padding, absolute "
    "positions).",
)
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Rows sampled from the output.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling and noise seed.")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_library_errors
def verify(**options: Any) -> None:
    """Prove on a real model that the masks of the shards in PATH do not leak.

    Samples rows, feeds them through maskprep.collate as training would, and runs five probes
    (pad invariance, unpadded reference, label leakage, cross-document, causal) under each
    attention implementation. Exit 1 when any probe sees a leak.
    """
    from .probes.driver import verify as run_verify
    from .probes.options import VerifyOptions
    from .report import verify_json, verify_table

    settings = VerifyOptions(
        revision=options["revision"],
        trust_remote_code=options["trust_remote_code"],
        from_config=options["from_config"],
        num_layers=options["num_layers"],
        device=options["device"],
        dtype=options["dtype"],
        attn_implementations=options["attn_implementations"],
        pack_forms=options["pack_forms"],
        pad_position_ids=options["pad_position_ids"],
        rows=options["rows"],
        seed=options["seed"],
        batch_size=options["batch_size"],
    )
    result = run_verify(options["path"], options["model"], settings)
    if options["as_json"]:
        click.echo(json.dumps(verify_json(result), indent=2))
    else:
        from rich.console import Console

        # Logs and pipes get a wide table rather than rich's 80-column default.
        width = None if sys.stdout.isatty() else 160
        Console(file=sys.stdout, width=width).print(verify_table(result))
    if not result.ok:
        raise SystemExit(1)


@main.command()
@click.argument("path", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@click.option("--sample", type=click.IntRange(min=1), help="Inspect N random rows, not all.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option(
    "--rows", "show_rows", type=click.IntRange(min=0), default=0, help="Decode the first N rows."
)
@click.option(
    "--row", "row_indices", type=click.IntRange(min=0), multiple=True, help="Decode row INDEX."
)
@click.option("-t", "--tokenizer", help="Tokenizer for decoding (default: the manifest's).")
@click.option("--eos-id", type=int, help="EOS id (default: the manifest's or the tokenizer's).")
@click.option("--pad-id", type=int, help="Pad id (default: the manifest's, else inferred).")
@click.option(
    "--strategy",
    type=click.Choice(cfg.STRATEGIES),
    help="Shape to hold rows to (default: the manifest's, else inferred).",
)
@click.option("--buckets", callback=_buckets, help="Bucket widths, e.g. 64,128,256.")
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
@_library_errors
def inspect(**options: Any) -> None:
    """Check shards against the data contract and show what they hold.

    PATH is a build output directory, one .parquet/.arrow shard, or - for an Arrow IPC stream on
    stdin. Exit code 1 when a check fails (or warns, with --strict).
    """
    from .checks.driver import inspect as run_inspect
    from .checks.options import InspectOptions
    from .report import inspect_json, print_inspect

    settings = InspectOptions(
        sample=options["sample"],
        seed=options["seed"],
        strategy=options["strategy"],
        buckets=options["buckets"],
        pad_id=options["pad_id"],
        eos_id=options["eos_id"],
        tokenizer=options["tokenizer"],
        max_pad_fraction=options["max_pad_fraction"],
        min_label_fraction=options["min_label_fraction"],
        show_rows=options["show_rows"],
        row_indices=tuple(options["row_indices"]),
        check_hashes=not options["no_hash_check"],
    )
    stdin = click.get_binary_stream("stdin") if options["path"] == "-" else None
    result = run_inspect(options["path"], settings, stdin=stdin)
    strict = options["strict"]
    if options["as_json"]:
        click.echo(json.dumps(inspect_json(result, strict), indent=2, ensure_ascii=False))
    else:
        from rich.console import Console

        # Piped output is read in logs and editors, wider than rich's 80-column default.
        console = Console(file=sys.stdout)
        if not console.is_terminal:
            console = Console(file=sys.stdout, width=120)
        print_inspect(console, result, strict)
    if not result.passes(strict):
        sys.exit(1)
