"""Guarding a training run's feed: :class:`LeakGuard` checks the first batches a model really
receives against the maskprep output they came from, and stops the run with a
:class:`LeakError` (naming the leak and the fix) before the first optimizer step when the feed
would leak. It is a ``transformers.TrainerCallback`` (``Trainer``, TRL's ``SFTTrainer``); plain
loops call :meth:`LeakGuard.watch` or :meth:`LeakGuard.check`. See ``docs/training.md``.

Importing this module imports transformers and torch.
"""

from .guard import GuardReport, LeakError, LeakGuard

__all__ = ["GuardReport", "LeakError", "LeakGuard"]
