"""The ``maskprep`` command: parse options, call the library, render results. No logic here.

One module per command (:mod:`.build`, :mod:`.merge`, :mod:`.verify`, :mod:`.inspect`), each with
the rendering of its result, and the helpers they share (:mod:`.common`). What a
command needs beyond Click (rich, the library) is imported only when it runs, so that
``maskprep --help`` starts fast.
"""

from __future__ import annotations

import os

import click

from .._version import __version__
from . import build, inspect, merge, verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maskprep")
def main() -> None:
    """Turn raw text into padded, masked training shards, and check that nothing leaks."""
    # transformers advises on import that it found no PyTorch: true and expected for build,
    # inspect and merge, which need none, so not printed on every run. The command's process is
    # the tool's own to configure (the library never sets variables).
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


main.add_command(build.build)
main.add_command(merge.merge)
main.add_command(verify.verify)
main.add_command(inspect.inspect)
