"""``maskprep build --engine ray``: the array-job parts of :mod:`maskprep.sources.parts`, run on a
Ray cluster, then merged by the driver.

Plain Ray actors, not Ray Data: a part is already the unit of work (deterministic, finished by
its own manifest), so the driver plans N parts, a pool of actors (one CPU each, the tokenizer
loaded once per actor, or read from the tokenizer cache the driver filled) builds them, and the
driver merges them and writes the manifest last — the same code path as
``--num-shards``/``merge``, so a Ray build and an array build of the same parts give the same
output. Parts are written next to the output, in ``DIR.parts/`` (``s3://…/out.parts/`` for an
output on an object store, which every worker reaches itself), and removed after the merge. The
driver holds the output's lock (a lease it renews while it waits on an object store) from the
first check to the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .. import storage
from ..config import BuildConfig, PartSpec
from ..errors import ConfigError, MaskprepError, Option, first_line
from ..output.directory import Action
from ..output.lock import DEFAULT_LEASE_TTL
from ..output.session import OutputRequest, OutputSession, write_failures
from ..sources.inputs import STDIN, expand_inputs
from ..tokenizing.cache import TokenizerCache
from ..tokenizing.loading import load_tokenizer
from .merge import check_parts, checked_totals, merge_into, read_part

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


def part_configs(
    config: BuildConfig, count: int, root: storage.Location | Path
) -> list[BuildConfig]:
    """One config per part, each writing to its own directory under ``root``."""
    if isinstance(root, Path):
        root = storage.parse_location(str(root))
    configs = []
    for index in range(count):
        directory = root.join(f"part-{index:05d}").url
        output = dataclasses.replace(config.output, directory=directory)
        configs.append(dataclasses.replace(config, part=PartSpec(index, count), output=output))
    return configs


class _PartBuilder:
    """A Ray actor body: loads the tokenizer once, then builds any number of parts. With a
    tokenizer cache that holds the tokenizer, nothing is loaded: each part reads the cache and
    the actor never imports transformers."""

    def __init__(
        self,
        config: BuildConfig,
        cache: TokenizerCache | None = None,
        storage_options: storage.StorageOptions | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
    ) -> None:
        self._cache = cache
        self._storage_options = storage_options
        self._lease_ttl = lease_ttl
        self._tokenizer = None if _cached(config, cache) else load_tokenizer(config.tokenizer)

    def build_part(self, config: BuildConfig) -> str:
        from ..pipeline import build

        built = build(
            config,
            tokenizer=self._tokenizer,
            tokenizer_cache=self._cache,
            storage_options=self._storage_options,
            lease_ttl=self._lease_ttl,
        )
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
    storage_options: storage.StorageOptions | None = None,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Any:
    """Build ``config`` as ``parts`` parts on Ray and merge them into ``config.output.directory``
    (a local directory, which the workers must see, or an object-store URL).

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
    location = _absolute(storage.parse_location(config.output.directory, storage_options))
    request = OutputRequest(
        overwrite=config.output.overwrite, resume=config.output.resume, lease_ttl=lease_ttl
    )
    with write_failures(location), OutputSession.open(location, request) as output:
        if output.action is Action.FINISHED:
            finished = finished_build(output, config, storage_options)
            if finished is not None:
                return finished
        if output.action is Action.RESUME:
            output.start_over()  # the parts are what resumes; the merge is redone
        # Missing inputs and unusable tokenizers are found here, as one-line errors, rather than
        # as a worker's failure with its traceback.
        expand_inputs(config.source.inputs, storage_options)
        prepare_tokenizer(
            config, None, tokenizer_cache, storage_options
        )  # and fills the cache for the workers
        root = location.parent.join(location.name + PARTS_SUFFIX)
        owned = not ray.is_initialized()
        if owned:
            address = os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            count = parts or max(1, int(ray.cluster_resources().get("CPU", 1)))
            configs = part_configs(config, count, root)
            builder = (tokenizer_cache, storage_options, lease_ttl)
            _run_parts(ray, config, configs, builder, output.keepalive)
        finally:
            if owned:
                ray.shutdown()  # a cluster named by RAY_ADDRESS is only disconnected from
        built = check_parts([read_part(c.output.directory, storage_options) for c in configs])
        merged = merge_into(output, built, checked_totals(built), engine="ray")
    _remove_tree(root)  # a local merged output holds hard links to the part shards
    return BuildResult(merged.output, merged.manifest, time.perf_counter() - started)


def _absolute(location: storage.Location) -> storage.Location:
    """A local output as an absolute path: the workers may not share the driver's directory."""
    if not location.is_local:
        return location
    return storage.Location(location.protocol, os.path.abspath(location.path), location.options)


def _remove_tree(root: storage.Location) -> None:
    if root.is_local:
        shutil.rmtree(root.path, ignore_errors=True)
        return
    with contextlib.suppress(storage.NotFound):
        storage.delete_many([info.location for info in storage.walk(root)])


def _run_parts(
    ray: Any,
    config: BuildConfig,
    configs: list[BuildConfig],
    builder: tuple[TokenizerCache | None, storage.StorageOptions | None, float],
    keepalive: Any,
) -> None:
    """Build every part on a pool of one-CPU actors sized to the cluster, at most one per part,
    calling ``keepalive`` (the output's lease) while it waits.

    Tokenizers run single-threaded in each actor: the actors are the parallelism, and N actors
    with N threads each on N CPUs would only contend.
    """
    cpus = max(1, int(ray.available_resources().get("CPU", 1)))
    workers = min(cpus, len(configs))
    actor = ray.remote(num_cpus=1)(_PartBuilder).options(
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}}
    )
    pool = ray.util.ActorPool([actor.remote(config, *builder) for _ in range(workers)])
    for part in configs:
        pool.submit(lambda a, c: a.build_part.remote(c), part)
    wait = max(1.0, builder[2] / 6)
    try:
        while pool.has_next():
            with contextlib.suppress(TimeoutError):
                pool.get_next_unordered(timeout=wait)
            keepalive()
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, MaskprepError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        reason = first_line(exc, default="no reason given")
        raise ConfigError(f"a Ray worker died while building a part: {reason}") from None
