"""Beyond one process: finished parts of one build (array jobs) merged under one manifest
(:mod:`.merge`), and the parts built on a Ray cluster, then merged (:mod:`.ray_engine`).

Both sit on top of :mod:`maskprep.pipeline`: a part is an ordinary build of
:mod:`maskprep.sources.parts`' share of the input.
"""
