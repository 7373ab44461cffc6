"""What the installed transformers does that some test expectations depend on, each fact named
with the release that changed it, so that an expectation says which versions it holds for.

A release that makes a feed *safer* flips a fact here and the gated tests follow it; a release
that makes maskprep's own feed leak fails the version-independent tests (maskprep's collator
never leaks, every probe sees its planted leak or says ``inconclusive``), which gate nothing.
"""

from __future__ import annotations

import inspect

import pytest
import transformers
from packaging.version import Version

#: The installed transformers release.
TRANSFORMERS = Version(transformers.__version__)

#: From 5.25, ``masking_utils.create_bidirectional_mask`` takes ``position_ids`` and BERT-family
#: encoders pass them: a packed row fed ``position_ids`` and no attention mask gets the block mask
#: (documents apart), and so do padded rows fed ``position_ids`` counted over real tokens (each
#: pad then starts a "document" of its own). Before 5.25 both leak (0.0079 on a tiny BERT pack).
BERT_MASKS_FROM_POSITION_IDS = Version("5.25") <= TRANSFORMERS


def bidirectional_mask_takes_position_ids() -> bool:
    """What the installed code says about the fact above, to hold the version gate to it."""
    from transformers import masking_utils

    signature = inspect.signature(masking_utils.create_bidirectional_mask)
    return "position_ids" in signature.parameters


#: The newest minor release whose leak facts were measured here (5.24 and 5.25 were).
MEASURED_THROUGH = (5, 25)
#: Facts measured on every release through :data:`MEASURED_THROUGH`, that a later release may
#: change: tests that assert them skip on a newer one, saying so, until they are measured there.
measured_fact = pytest.mark.skipif(
    TRANSFORMERS.release[:2] > MEASURED_THROUGH,
    reason=(
        f"transformers {TRANSFORMERS} is newer than the releases this leak fact was measured on "
        f"(through {'.'.join(map(str, MEASURED_THROUGH))}): measure it, then update "
        "tests/upstream.py"
    ),
)

#: A measured fact (5.24, 5.25): a decoder fed a pack's ``position_ids`` with its KV cache on
#: (``use_cache`` not False) lets the documents see each other (0.31 on a tiny Llama), since
#: transformers builds the block mask from ``position_ids`` only when there is no cache. Tests of
#: it carry :data:`measured_fact`.
DECODER_PACKS_LEAK_WITH_A_CACHE = True
