"""``maskprep build --engine ray``: the array-job parts of :mod:`maskprep.sources.parts`, run on a
Ray cluster, then merged by the driver.

Plain Ray tasks, not Ray Data: a part is already the unit of work (deterministic, finished by
its own manifest), so the driver plans N parts, one task each (one CPU, the tokenizer loaded by
the task or read from the tokenizer cache the driver filled) builds them, Ray reruns a part
whose worker or node died (the rerun resumes what the dead attempt finished), and the driver
merges them and writes the manifest last — the same code path as
``--num-parts``/``merge``, so a Ray build and an array build of the same parts give the same
output. Parts are written next to the output, in ``DIR.parts/`` (``s3://…/out.parts/`` for an
output on an object store, which every worker reaches itself), and removed after the merge: the
parts directory is the engine's own, and one it did not make is never written into nor removed.

The rules of the parts directory (the commit protocol's, :mod:`maskprep.output.commit`, applied
to a directory of outputs): one without the engine's marker (``_maskprep_parts.json``), or with a
marker for another output, is never written into nor removed: the build is refused, naming it. A
symbolic link is never followed (``OUT.parts`` or anything in it being one refuses the build).
One the engine made for this output is used again only as the user asks: ``--resume`` resumes its
parts (of the same build), ``--overwrite`` removes it and starts over, a plain build is refused.
Once the merged output is committed the directory is removed (the merged shards are hard links
or copies, not the parts' files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from .. import storage
from ..config import BuildConfig, PartSpec
from ..errors import OVERWRITE, RESUME, ConfigError, MaskprepError, Option, OutputError, first_line
from ..output.commit import Action
from ..output.manifest import RecordedConfig
from ..sources.inputs import STDIN, expand_inputs
from ..tokenizing.cache import TokenizerCache
from .merge import check_parts, checked_totals, merge_into, read_part
from .reaper import keep_signal_handlers, private_cluster

#: How messages name the Ray engine: ``--engine ray`` on the command line.
ENGINE = Option("engine", "ray")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"{ENGINE} needs Ray, which is not installed: pip install 'maskprep[ray]'",
            suggests=(ENGINE,),
        ) from None
    return ray


def part_configs(config: BuildConfig, count: int, root: storage.Location) -> list[BuildConfig]:
    """One config per part, each writing to its own directory under ``root``."""
    configs = []
    for index in range(count):
        directory = root.join(f"part-{index:05d}").url
        # Every attempt resumes its part: a retried part keeps what the attempt that died
        # finished (see build_part); leftovers of other builds are dealt with before.
        output = dataclasses.replace(
            config.output, directory=directory, resume=True, overwrite=False
        )
        configs.append(dataclasses.replace(config, part=PartSpec(index, count), output=output))
    return configs


#: How often Ray reruns a part whose worker or node died (a part that raises is not rerun: the
#: same input would fail the same way).
PART_RETRIES = 3


@dataclasses.dataclass(frozen=True)
class PartRun:
    """Where and how one part was built, as its last (successful) attempt reports it."""

    index: int
    #: The Ray node the part was built on (``ray.get_runtime_context().get_node_id()``).
    node_id: str
    #: The worker process that built it.
    pid: int
    #: Complete shards an earlier attempt left, checked and kept (a retried part resumes).
    reused_shards: int


def build_part(
    config: BuildConfig,
    cache: TokenizerCache | None = None,
    storage_options: storage.StorageOptions | None = None,
    node_id: str = "",
) -> PartRun:
    """Build one part (the body of a Ray task). ``config`` resumes its part directory: what is
    there was left by an earlier attempt of this same build (the driver refused or removed
    anything else before the first attempt), whose complete shards are kept. An attempt that
    was lost but still runs somewhere (a node cut off, not dead) cannot harm this one: see
    :mod:`maskprep.output.commit`."""
    from ..pipeline import build

    built = build(config, tokenizer_cache=cache, storage_options=storage_options)
    assert config.part is not None
    return PartRun(config.part.index, node_id, os.getpid(), built.reused_shards)


def _remote_part(
    config: BuildConfig,
    cache: TokenizerCache | None,
    storage_options: storage.StorageOptions | None,
) -> PartRun:
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return build_part(config, cache, storage_options, node_id=node_id)


def build_with_ray(
    config: BuildConfig,
    *,
    parts: int | None = None,
    tokenizer_cache: TokenizerCache | None = None,
    storage_options: storage.StorageOptions | None = None,
    on_part: Callable[[PartRun], None] | None = None,
) -> Any:
    """Build ``config`` as ``parts`` parts on Ray and merge them into ``config.output.directory``
    (a local directory, which the workers must see, or an object-store URL).

    Connects to the cluster in ``RAY_ADDRESS`` when set, else starts a private local one
    (``address="local"``), and shuts down only a cluster it started; if Ray is already
    initialised in this process, uses that. ``parts`` defaults to the cluster's CPUs (pass it to
    get the same output on any cluster). With ``tokenizer_cache``, the driver fills it and the
    workers that see the same directory skip loading transformers. A part whose worker or node
    dies is rerun by Ray (up to :data:`PART_RETRIES` times), on any node, resuming what the dead
    attempt finished; ``on_part`` is called with each part's :class:`PartRun` as it finishes.
    Returns a
    :class:`~maskprep.pipeline.BuildResult`.
    """
    from ..pipeline import BuildResult, build_output
    from ..tokenizing.prepare import prepare_tokenizer

    ray = _import_ray()
    if config.part is not None:
        raise ConfigError(
            f"{ENGINE} builds every part itself; leave out the part index", suggests=(ENGINE,)
        )
    if STDIN in config.source.inputs:
        raise ConfigError("standard input ('-') cannot be split into parts for Ray; give files")
    started = time.perf_counter()
    location = storage.absolute(storage.parse_location(config.output.directory, storage_options))
    with build_output(config, location) as (output, finished):
        if finished is not None:
            return finished
        if output.action is Action.RESUME:
            output.start_over()  # the parts are what resumes; the merge is redone
        # Missing inputs and unusable tokenizers are found here, as one-line errors, rather than
        # as a worker's failure with its traceback.
        expand_inputs(config.source.inputs, location.options)
        # This also fills the tokenizer cache for the workers.
        prepare_tokenizer(config, None, tokenizer_cache, location.options)
        with _cluster(ray) as private:
            count = parts or max(1, int(ray.cluster_resources().get("CPU", 1)))
            root = open_parts_root(location, config, count)
            configs = part_configs(config, count, root)
            _run_parts(ray, configs, (tokenizer_cache, location.options), on_part, private)
        built = check_parts([read_part(c.output.directory, location.options) for c in configs])
        merged = merge_into(output, built, checked_totals(built), engine="ray")
    _remove_parts(root)  # a local merged output holds hard links to the part shards
    return BuildResult(merged.output, merged.manifest, time.perf_counter() - started)


@contextlib.contextmanager
def _cluster(ray: Any) -> Iterator[bool]:
    """Ray for the body: the session this process already has (left alone), the cluster in
    ``RAY_ADDRESS`` (disconnected from after, never stopped), or a private local one, which
    dies with this build however it ends (:mod:`.reaper`). Yields whether it is the private
    one."""
    if ray.is_initialized():
        yield False
        return
    options = {"include_dashboard": False, "log_to_driver": False}
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        with private_cluster(ray, **options):
            yield True
        return
    with keep_signal_handlers():
        ray.init(address=address, **options)
    try:
        yield False
    finally:
        with keep_signal_handlers():
            ray.shutdown()  # a cluster named by RAY_ADDRESS is only disconnected from


def _run_parts(
    ray: Any,
    configs: list[BuildConfig],
    builder: tuple[TokenizerCache | None, storage.StorageOptions | None],
    on_part: Callable[[PartRun], None] | None,
    private: bool,
) -> None:
    """Build every part as a one-CPU Ray task, calling ``on_part`` as each part finishes.
    On a failure the parts still running are cancelled, unless the cluster is ``private``
    (:func:`_cancel` says why).

    Tasks rather than actors: Ray reruns a task whose worker or node died on any node with a
    free CPU, where an actor would have to be restarted first and a pool of them sized to the
    cluster would leave the restarted one no CPU. Tokenizers run single-threaded in each task:
    the tasks are the parallelism, and N tasks with N threads each on N CPUs would only contend.
    """
    task = ray.remote(_remote_part).options(
        num_cpus=1,
        max_retries=PART_RETRIES,
        retry_exceptions=False,
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}},
    )
    pending = [task.remote(part, *builder) for part in configs]
    try:
        while pending:
            # A short wait: a signal (SIGTERM, Ctrl-C) is handled between two, not after the
            # next part finishes.
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                run = ray.get(ref)
                if on_part is not None:
                    on_part(run)
    except ray.exceptions.RayTaskError as exc:
        _cancel(ray, pending, private)
        if isinstance(exc.cause, MaskprepError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayError as exc:
        _cancel(ray, pending, private)
        reason = first_line(exc, default="no reason given")
        raise ConfigError(
            f"a Ray worker died while building a part, {PART_RETRIES + 1} times: {reason}"
        ) from None
    except BaseException:
        _cancel(ray, pending, private)
        raise


def _cancel(ray: Any, pending: list[Any], private: bool) -> None:
    """Stop the parts still running: on a cluster the driver did not start they would go on
    writing after the build has failed. A private cluster is left to its shutdown, which stops
    them too: Ray 2.60's driver can die of a cancel that crosses a task's reply (a failed
    internal check, "Tried to complete task that was not pending", exit 1 or by the signal), which
    turned about half of the SIGTERMs of ``tests/test_ray_engine.py`` into a crash, not exit 143."""
    if private:
        return
    for ref in pending:
        with contextlib.suppress(Exception):
            ray.cancel(ref)


MARKER_NAME = "_maskprep_parts.json"
_PART = re.compile(r"part-[0-9]{5}")


def _remove_parts(root: storage.Location) -> None:
    """Remove a parts directory and every part in it, never following a link."""
    with contextlib.suppress(storage.StorageError):
        storage.remove_tree(root)


def open_parts_root(output: storage.Location, config: BuildConfig, count: int) -> storage.Location:
    """The parts directory, ``OUT.parts`` beside ``output``, for a Ray build of ``config`` in
    ``count`` parts: made (and marked) when absent, else used again or removed as the rules say
    (see the module notes); refused (:class:`OutputError`) otherwise."""
    root = output.parent.join(output.name + ".parts")
    marker = {
        "output": output.url,
        "parts": count,
        "config": RecordedConfig.from_build(config).raw,
    }
    found = _read_marker(root)
    if found is None:
        _make(root, marker)
        return root
    if found.get("output") != marker["output"]:
        raise OutputError(
            f"{root.url}: made by maskprep's Ray engine for another output "
            f"({found.get('output')}); remove it or choose another output"
        )
    if config.output.overwrite:
        _remove_parts(root)
        _make(root, marker)
        return root
    if not config.output.resume:
        raise OutputError(
            f"{root.url}: holds the parts of an unfinished Ray build of {output.url}; "
            f"resume it ({RESUME}) to finish it, or overwrite it ({OVERWRITE}) to start over",
            suggests=(RESUME, OVERWRITE),
        )
    if found != marker:
        raise OutputError(
            f"{root.url}: holds the parts of another build of {output.url} (other "
            f"options or part count); overwrite it ({OVERWRITE}) to start over",
            suggests=(OVERWRITE,),
        )
    return root


def _read_marker(location: storage.Location) -> dict[str, object] | None:
    """The marker of an existing parts directory, checked to hold nothing but parts and no
    symbolic link; ``None`` when there is nothing there."""
    link = "is a symbolic link; maskprep never writes through a link (remove it)"
    if storage.is_link(location):
        raise OutputError(f"{location.url}: {link}")
    try:
        found = storage.entries(location)
    except storage.StorageRequestError as exc:
        raise OutputError(f"{location.url}: {exc.detail}") from None
    if found is None:
        return None
    for entry in found:
        if entry.kind is storage.Kind.LINK:
            raise OutputError(f"{location.join(entry.name).url}: {link}")
    entries = {entry.name for entry in found}
    if MARKER_NAME not in entries:
        raise OutputError(
            f"{location.url}: exists, and was not made by maskprep's Ray engine (it has no "
            f"{MARKER_NAME}); remove it or choose another output"
        )
    strange = [n for n in sorted(entries) if n != MARKER_NAME and not _PART.fullmatch(n)]
    if strange:
        raise OutputError(f"{location.url}: holds files maskprep did not write ({strange[0]})")
    try:
        data = json.loads(storage.read_bytes(location.join(MARKER_NAME)))
    except (ValueError, storage.StorageRequestError):
        data = None
    if not isinstance(data, dict):
        raise OutputError(f"{location.join(MARKER_NAME).url}: not a parts marker of maskprep's")
    return data


def _make(location: storage.Location, marker: dict[str, object]) -> None:
    """Make the directory and its marker, create-if-absent: another writer making it at the
    same moment makes this one refuse rather than share it."""
    data = (json.dumps(marker, sort_keys=True, indent=2) + "\n").encode()
    busy = f"{location.url}: made by another writer at the same moment"
    if location.is_local and not storage.create_directory(location):
        raise OutputError(busy)
    try:
        storage.put_if_absent(location.join(MARKER_NAME), data)
    except storage.AlreadyExists:
        raise OutputError(busy) from None
