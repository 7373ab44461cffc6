"""``maskprep build``: options → :class:`~maskprep.config.BuildConfig`, then the build (local or on
Ray), its progress on stderr and its summary (a table, or the ``--json`` object)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from .. import config as cfg
from .common import (
    BUCKETS,
    REJECT_LIMIT,
    SHARE,
    SIZE,
    Command,
    Parsed,
    Report,
    config_from,
    output_option,
    storage_options_option,
    two_column_table,
)

if TYPE_CHECKING:
    from rich.table import Table

    from ..distributed.ray_engine import PartRun
    from ..pipeline import BuildResult, Progress
    from ..tokenizing.cache import TokenizerCache


def _local_directory(value: str) -> str:
    """The tokenizer cache's directory: local (a ``file://`` URL names one). A store URL is
    refused: the cache is read before anything else, to spare loading transformers, so a remote
    one would cost about the time it saves, and its writes rely on local renames and flock."""
    from ..errors import ConfigError
    from ..storage import local_form, parse_location

    path = local_form(value)
    if not parse_location(path).is_local:
        raise ConfigError(
            f"{value}: the tokenizer cache must be a local directory (each machine keeps its own)"
        )
    return path


@click.command(cls=Command)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-t", "--tokenizer", required=True, help="Hub name or local directory.")
@output_option
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
    "--max-truncated",
    type=SHARE,
    metavar="P%|F",
    help="Fail (exit 1, no manifest written) when more than this share of the tokens read is "
    "lost to --overflow (truncated, or dropped): a percentage (5%) or a fraction (0.05). "
    "Without it, more than 5% lost is a warning.",
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
    type=BUCKETS,
    help="With --strategy bucket: row lengths, e.g. 64,128,256 (--max-length is always one). "
    "Default: powers of two from 64.",
)
@click.option(
    "--pack-algorithm",
    type=click.Choice(cfg.PACK_ALGORITHMS),
    help="With --strategy pack: bfd (best-fit decreasing) fills rows better; greedy keeps input "
    "order.  [default: bfd]",
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
    help="fail: stop at the first bad record; skip: write it to _rejects.jsonl and go on.",
)
@click.option(
    "--max-rejects",
    type=REJECT_LIMIT,
    help="With --on-bad-record skip: fail (exit 1, no manifest written) when more than N "
    "records, or more than P% of the records read, are rejected. N or P%.",
)
@click.option(
    "--max-record-bytes",
    type=SIZE,
    help="Longest input line read (e.g. 1M); a longer one is a bad record.  [default: 64M]",
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
    help="Append EOS to every document unless already there. Default: on for --strategy pack "
    "(plain documents) and after prompt/completion records' completions, off otherwise.",
)
@click.option(
    "--format",
    "shard_format",
    type=click.Choice(cfg.SHARD_FORMATS),
    default="parquet",
    show_default=True,
)
@click.option("--shard-rows", type=click.IntRange(min=1), help="Roll shards at this many rows.")
@click.option("--shard-size", type=SIZE, help="Roll shards at this size (e.g. 256M, 1G).")
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
    "--num-parts",
    type=click.IntRange(1, cfg.MAX_PARTS),
    help="Array jobs: split the input into this many parts (with --part-index).",
)
@click.option(
    "--part-index",
    type=click.IntRange(min=0),
    help="Array jobs: build only this part (0-based); join the parts with maskprep merge.",
)
@click.option(
    "--engine",
    type=click.Choice(("local", "ray")),
    default="local",
    show_default=True,
    help="ray: build --num-parts parts (default: one per cluster CPU) on the Ray cluster in "
    "RAY_ADDRESS, or a local one, and merge them.",
)
@click.option(
    "--tokenizer-cache",
    type=Parsed(_local_directory, click.Path(file_okay=False)),
    envvar="MASKPREP_TOKENIZER_CACHE",
    show_envvar=True,
    help="Cache local tokenizers of plain-text builds in this directory, so that later builds "
    "start without loading transformers. Never changes the output. Default: no cache.",
)
@click.option(
    "--no-tokenizer-cache",
    is_flag=True,
    help="Cache nothing, even with MASKPREP_TOKENIZER_CACHE set.",
)
@storage_options_option
def build(**options: Any) -> Report:
    """Tokenize text or JSONL into padded, bucketed or packed shards with masks and labels.

    INPUT... are text or JSONL files, directories, globs, or - for stdin. Writes
    DIR/data-NNNNN.parquet shards with input_ids, attention_mask, labels (-100 where a position
    is not trained) and length (packs add position_ids and seq_lens), then DIR/_maskprep.json last.
    """
    from ..pipeline import build as run_build

    config = cfg.BuildConfig(
        source=config_from(cfg.SourceConfig, options),
        tokenizer=config_from(cfg.TokenizerConfig, options, name_or_path=options["tokenizer"]),
        shape=config_from(cfg.ShapeConfig, options),
        output=config_from(
            cfg.OutputConfig, options, directory=options["output"], format=options["shard_format"]
        ),
        batch_size=options["batch_size"],
        sft=_sft_config(options),
        part=_part_spec(options) if options["engine"] == "local" else None,
    )
    quiet = options["quiet"] or options["as_json"]
    if options["engine"] == "ray":
        from ..distributed.ray_engine import build_with_ray

        if options["part_index"] is not None:
            raise click.UsageError("--part-index does not apply to --engine ray")
        result = build_with_ray(
            config,
            parts=options["num_parts"],
            tokenizer_cache=_tokenizer_cache(options),
            storage_options=options["storage_options"],
            on_part=None if quiet else _report_part,
        )
    else:
        with ProgressReporter(quiet=quiet) as reporter:
            result = run_build(
                config,
                on_progress=reporter.callback,
                tokenizer_cache=_tokenizer_cache(options),
                storage_options=options["storage_options"],
            )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)

    def show() -> None:
        from rich.console import Console

        Console(file=sys.stdout).print(build_summary(result))

    return Report(build_json(result), None if options["quiet"] else show)


def _report_part(run: PartRun) -> None:
    """A line on stderr as each Ray part finishes: on a cluster, parts are the progress."""
    resumed = (
        f", {run.reused_shards} shard(s) kept from a failed attempt" if run.reused_shards else ""
    )
    click.echo(
        f"maskprep: part {run.index} built on node {run.node_id[:8]} (pid {run.pid}){resumed}",
        err=True,
    )


def _tokenizer_cache(options: dict[str, Any]) -> TokenizerCache | None:
    from ..tokenizing.cache import TokenizerCache

    chosen = options["tokenizer_cache"]
    if options["no_tokenizer_cache"] or not chosen:
        return None
    return TokenizerCache(Path(chosen))


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
    return config_from(cfg.SFTConfig, options)


def _part_spec(options: dict[str, Any]) -> cfg.PartSpec | None:
    count, index = options["num_parts"], options["part_index"]
    if count is None and index is None:
        return None
    if count is None or index is None:
        raise click.UsageError("--num-parts and --part-index go together")
    return cfg.PartSpec(index=index, count=count)


def si(value: float) -> str:
    """``value`` with a G, M or k suffix (two decimals), for progress lines and summaries."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


class ProgressReporter:
    """Shows build progress: a rich bar on a terminal, a plain line every ``interval`` seconds
    otherwise, nothing when quiet. Use as a context manager; ``update`` is the callback."""

    def __init__(self, quiet: bool, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        # No stderr at all (a process started without one): nothing to show progress on.
        self.quiet = quiet or self.stream is None
        self.interval = interval
        self._last: float | None = None
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressReporter:
        if not self.quiet and self.stream.isatty():
            from rich import progress as bar
            from rich.console import Console

            self._bar = bar.Progress(
                bar.TextColumn("[bold]build"),
                bar.BarColumn(),
                bar.TextColumn("{task.fields[detail]}"),
                bar.TimeElapsedColumn(),
                bar.TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("build", total=None, detail="starting")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def callback(self) -> Callable[[Progress], None] | None:
        """The function to pass as ``on_progress``, or ``None`` when quiet."""
        return None if self.quiet else self.update

    def update(self, progress: Progress) -> None:
        """Render one progress snapshot."""
        rate = progress.real_tokens / progress.elapsed_s if progress.elapsed_s > 0 else 0.0
        detail = f"{progress.records:,} docs · {si(progress.real_tokens)} tokens · {si(rate)} tok/s"
        if self._bar is not None:
            self._bar.update(
                self._task,
                total=progress.bytes_total,
                completed=progress.bytes_read,
                detail=detail,
            )
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.interval:
            self._last = now
            print(f"maskprep: {detail}", file=self.stream, flush=True)


def build_summary(result: BuildResult) -> Table:
    """A two-column table of a build's counts."""
    totals = result.totals.as_dict()
    rate = result.totals.real_tokens / result.elapsed_s if result.elapsed_s > 0 else 0.0
    rows = [
        ("records read", f"{totals['records_read']:,}"),
        ("blank lines skipped", f"{totals['blank_lines']:,}"),
        ("records rejected", f"{totals['records_rejected']:,}"),
        ("documents written", f"{totals['documents_written']:,}"),
        ("documents truncated", f"{totals['documents_truncated']:,}"),
        ("tokens lost to truncation", f"{totals['tokens_truncated']:,}"),
        ("documents dropped (too long)", f"{totals['documents_dropped']:,}"),
        ("documents split", f"{totals['documents_split']:,}"),
        ("rows written", f"{totals['rows_written']:,}"),
        ("shards", f"{len(result.shards):,}"),
        ("real tokens", f"{totals['real_tokens']:,}"),
        ("pad tokens", f"{totals['pad_tokens']:,}"),
        ("trained (label) tokens", f"{totals['label_tokens']:,}"),
        ("fill (real / positions)", f"{totals['fill']:.1%}"),
        ("time", f"{result.elapsed_s:.2f} s ({si(rate)} tokens/s)"),
    ]
    if result.manifest.config.supervised:
        rows[6:6] = [  # after the truncation counts
            (
                "prompts cut from the left",
                f"{totals['prompts_truncated']:,} ({totals['prompt_tokens_truncated']:,} tokens)",
            ),
            (
                "completions cut from the right",
                f"{totals['completions_truncated']:,} "
                f"({totals['completion_tokens_truncated']:,} tokens)",
            ),
        ]
        # under the rejected records
        rows[3:3] = [("  of which without labels", f"{totals['documents_without_labels']:,}")]
    fill = result.manifest.fill
    rows.append(("strategy", fill.strategy))
    if fill.strategy == "pack":
        rows.append(("documents per row", f"{fill.documents_per_row:.2f}"))
    for bucket in fill.buckets or ():
        rows.append((f"  bucket {bucket.length}", f"{bucket.rows:,} rows · fill {bucket.fill:.1%}"))
    if result.reused_shards:
        rows.append(("shards reused (resume)", f"{result.reused_shards:,}"))
    if result.tokenizer_cached:
        rows.append(("tokenizer", "from the tokenizer cache"))
    rows.extend(("warning", text) for text in result.warnings)
    return two_column_table(f"maskprep build → {result.output}", rows, justify="right")


def build_json(result: BuildResult) -> dict[str, Any]:
    """The summary object ``maskprep build --json`` prints."""
    return {
        "output": str(result.output),
        "shards": [shard.path for shard in result.manifest.shards],
        "totals": result.manifest.totals.as_dict(),
        "fill": result.manifest.fill.as_dict(),
        "elapsed_s": round(result.elapsed_s, 3),
        "reused_shards": result.reused_shards,
        "tokenizer_cached": result.tokenizer_cached,
        "warnings": list(result.warnings),
    }
