"""Small, fully offline tokenizers for the tests, the sample data
(``scripts/make_sample_tokenizer.py``) and the benchmarks, trained with the ``tokenizers``
library. A test helper, not part of the package.

They behave like a Llama-style tokenizer (byte-level BPE, ``<s>`` prepended, ``</s>`` as EOS, no
pad token by default) and are saved as a ``PreTrainedTokenizerFast`` directory that
``AutoTokenizer.from_pretrained`` loads like any Hub tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path


def make_tokenizer(
    directory: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 400,
    pad_token: str | None = None,
    add_bos: bool = True,
    add_eos: bool = False,
    padding_side: str = "right",
    chat_template: str | None = None,
    extra_special_tokens: Sequence[str] = (),
) -> Path:
    """Train a byte-level BPE tokenizer on ``texts`` and save it to ``directory``.

    Special tokens take the first ids in this order: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, then
    ``pad_token`` 3 when given, then ``extra_special_tokens`` in order (chat markers such as
    ``<|im_start|>``, which a chat template needs as single, never-split tokens). The
    post-processor frames each sequence as ``<s> … </s>`` per ``add_bos`` and ``add_eos``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"] + ([pad_token] if pad_token else [])
    specials += list(extra_special_tokens)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    single = " ".join((["<s>"] if add_bos else []) + ["$A"] + (["</s>"] if add_eos else []))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single,
        special_tokens=[("<s>", specials.index("<s>")), ("</s>", specials.index("</s>"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token=pad_token,
        padding_side=padding_side,
        additional_special_tokens=list(extra_special_tokens) or None,
    )
    if chat_template is not None:
        fast.chat_template = chat_template
    out = Path(directory)
    fast.save_pretrained(out)
    return out
