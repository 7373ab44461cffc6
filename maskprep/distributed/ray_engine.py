"""``maskprep build --engine ray``: the array-job parts of :mod:`maskprep.sources.parts`, run on a
Ray cluster, then merged by the driver.

Plain Ray actors, not Ray Data: a part is already the unit of work (deterministic, finished by
its own manifest), so the driver plans N parts, a pool of actors (one CPU each, the tokenizer
loaded once per actor, or read from the tokenizer cache the driver filled) builds them, and the
driver merges them and writes the manifest last — the same code path as
``--num-shards``/``merge``, so a Ray build and an array build of the same parts give the same
output. Parts are written next to the output, in ``DIR.parts/``, which the workers must see (on
a real cluster: a shared filesystem), and removed after the merge.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ..config import BuildConfig, PartSpec
from ..errors import ConfigError, MaskprepError, Option, OutputError, first_line
from ..output.lock import LOCK_NAME
from ..sources.inputs import STDIN, expand_inputs
from ..tokenizing.cache import TokenizerCache
from ..tokenizing.loading import load_tokenizer
from .merge import merge

PARTS_SUFFIX = ".parts"
#: How messages name the Ray engine: ``--engine ray`` on the command line.
ENGINE = Option("engine", "ray")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError.suggesting(
            "{engine} needs Ray, which is not installed: pip install 'maskprep[ray]'", engine=ENGINE
        ) from None
    return ray


def part_configs(config: BuildConfig, count: int, root: Path) -> list[BuildConfig]:
    """One config per part, each writing to its own directory under ``root``."""
    configs = []
    for index in range(count):
        output = dataclasses.replace(config.output, directory=str(root / f"part-{index:05d}"))
        configs.append(dataclasses.replace(config, part=PartSpec(index, count), output=output))
    return configs


class _PartBuilder:
    """A Ray actor body: loads the tokenizer once, then builds any number of parts. With a
    tokenizer cache that holds the tokenizer, nothing is loaded: each part reads the cache and
    the actor never imports transformers."""

    def __init__(self, config: BuildConfig, cache: TokenizerCache | None = None) -> None:
        self._cache = cache
        self._tokenizer = None if _cached(config, cache) else load_tokenizer(config.tokenizer)

    def build_part(self, config: BuildConfig) -> str:
        from ..pipeline import build

        built = build(config, tokenizer=self._tokenizer, tokenizer_cache=self._cache)
        return str(built.output)


def _cached(config: BuildConfig, cache: TokenizerCache | None) -> bool:
    """Whether builds of ``config`` would take their tokenizer from ``cache``."""
    if cache is None or config.sft is not None:
        return False
    key = cache.key(config.tokenizer)
    return key is not None and cache.get(key) is not None


def build_with_ray(
    config: BuildConfig,
    *,
    parts: int | None = None,
    tokenizer_cache: TokenizerCache | None = None,
) -> Any:
    """Build ``config`` as ``parts`` parts on Ray and merge them into ``config.output.directory``.

    Connects to the cluster in ``RAY_ADDRESS`` when set, else starts a private local one
    (``address="local"``), and shuts down only a cluster it started; if Ray is already
    initialised in this process, uses that. ``parts`` defaults to the cluster's CPUs (pass it to
    get the same output on any cluster). With ``tokenizer_cache``, the driver fills it and the
    workers that see the same directory skip loading transformers. Returns a
    :class:`~maskprep.results.BuildResult`.
    """
    from ..pipeline import finished_build
    from ..results import BuildResult
    from ..tokenizing.prepare import prepare_tokenizer

    ray = _import_ray()
    if config.part is not None:
        raise ConfigError.suggesting(
            "{engine} builds every part itself; leave out the part index", engine=ENGINE
        )
    if STDIN in config.source.inputs:
        raise ConfigError("standard input ('-') cannot be split into parts for Ray; give files")
    started = time.perf_counter()
    directory = Path(config.output.directory).resolve()
    finished = finished_build(directory, config) if directory.is_dir() else None
    if finished is not None:
        return finished
    _check_output_free(directory, config)
    # Missing inputs and unusable tokenizers are found here, as one-line errors, rather than
    # as a worker's failure with its traceback.
    expand_inputs(config.source.inputs)
    prepare_tokenizer(config, None, tokenizer_cache)  # and fills the cache for the workers
    owned = not ray.is_initialized()
    if owned:
        address = os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        count = parts or max(1, int(ray.cluster_resources().get("CPU", 1)))
        root = directory.with_name(directory.name + PARTS_SUFFIX)
        configs = part_configs(config, count, root)
        _run_parts(ray, config, configs, tokenizer_cache)
    finally:
        if owned:
            ray.shutdown()  # a cluster named by RAY_ADDRESS is only disconnected from, not stopped
    merged = merge(
        [c.output.directory for c in configs],
        directory,
        overwrite=config.output.overwrite or config.output.resume,
        engine="ray",
    )
    shutil.rmtree(root)  # the merged output holds hard links to the part shards
    return BuildResult(merged.output, merged.manifest, time.perf_counter() - started)


def _check_output_free(directory: Path, config: BuildConfig) -> None:
    """Refuse a non-empty output before any work, as a local build does."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise OutputError(f"{directory}: output exists and is not a directory")
    present = [p.name for p in directory.iterdir() if p.name != LOCK_NAME]
    # With resume, an output without a manifest is an interrupted merge, which is redone.
    if present and not (config.output.overwrite or config.output.resume):
        raise OutputError(
            f"{directory}: output directory is not empty; pass overwrite to replace its contents"
        )


def _run_parts(
    ray: Any, config: BuildConfig, configs: list[BuildConfig], cache: TokenizerCache | None
) -> None:
    """Build every part on a pool of one-CPU actors sized to the cluster, at most one per part.

    Tokenizers run single-threaded in each actor: the actors are the parallelism, and N actors
    with N threads each on N CPUs would only contend.
    """
    cpus = max(1, int(ray.available_resources().get("CPU", 1)))
    workers = min(cpus, len(configs))
    actor = ray.remote(num_cpus=1)(_PartBuilder).options(
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}}
    )
    pool = ray.util.ActorPool([actor.remote(config, cache) for _ in range(workers)])
    try:
        list(pool.map_unordered(lambda a, c: a.build_part.remote(c), configs))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, MaskprepError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        reason = first_line(exc, default="no reason given")
        raise ConfigError(f"a Ray worker died while building a part: {reason}") from None
