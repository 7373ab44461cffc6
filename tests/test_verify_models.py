"""verify loads what transformers loads (models with their own code, through ``auto_map``), feeds
exactly what the collator feeds, leaves a caller's model as it was, and keeps transformers quiet
outside a terminal."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rowkit import one_torch_thread, pack_rows, pad_rows, random_docs, tiny_config, write_output

from maskprep import VerifyOptions, verify
from maskprep.cli import main
from maskprep.verifying.driver import verify_rows

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch", reason="needs the verify extra (torch)")

PAD = 3
_single_thread = pytest.fixture(autouse=True, scope="module")(one_torch_thread)

#: A Llama decoder with its own code; ``drop_attention_mask`` in its config makes it ignore the
#: attention mask, as a careless custom forward does.
REMOTE_DECODER = {
    "configuration_maskless.py": """
from transformers import LlamaConfig


class MasklessConfig(LlamaConfig):
    model_type = "maskless-llama"

    def __init__(self, drop_attention_mask=False, **kwargs):
        self.drop_attention_mask = drop_attention_mask
        super().__init__(**kwargs)
""",
    "modeling_maskless.py": """
from transformers import LlamaForCausalLM

from .configuration_maskless import MasklessConfig


class MasklessForCausalLM(LlamaForCausalLM):
    config_class = MasklessConfig

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if self.config.drop_attention_mask:
            attention_mask = None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
""",
}
#: A BERT encoder with its own code that only has a base model (``AutoModel``).
REMOTE_ENCODER = {
    "configuration_homebert.py": """
from transformers import BertConfig


class HomeBertConfig(BertConfig):
    model_type = "home-bert"
""",
    "modeling_homebert.py": """
from transformers import BertModel

from .configuration_homebert import HomeBertConfig


class HomeBertModel(BertModel):
    config_class = HomeBertConfig
""",
}


def _remote_dir(root: Path, files: dict[str, str], config: dict, auto_map: dict) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text.lstrip(), encoding="utf-8")
    (root / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    return root


def _llama_fields(**extra) -> dict:
    fields = tiny_config("llama").to_dict()
    return {k: v for k, v in fields.items() if not k.startswith("_")} | extra


@pytest.fixture(scope="module")
def remote(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remote")
    decoder_map = {
        "AutoConfig": "configuration_maskless.MasklessConfig",
        "AutoModelForCausalLM": "modeling_maskless.MasklessForCausalLM",
    }
    out = {}
    for name, drop in (("maskless", True), ("masked", False)):
        config = _llama_fields(
            model_type="maskless-llama",
            architectures=["MasklessForCausalLM"],
            drop_attention_mask=drop,
        )
        out[name] = _remote_dir(root / name, REMOTE_DECODER, config, decoder_map)
    bert = {k: v for k, v in tiny_config("bert").to_dict().items() if not k.startswith("_")}
    out["encoder"] = _remote_dir(
        root / "homebert",
        REMOTE_ENCODER,
        {**bert, "model_type": "home-bert", "architectures": ["HomeBertModel"]},
        {
            "AutoConfig": "configuration_homebert.HomeBertConfig",
            "AutoModel": "modeling_homebert.HomeBertModel",
        },
    )
    return out


@pytest.fixture(scope="module")
def left_padded(tmp_path_factory) -> Path:
    """Left padding: a decoder that ignores the mask lets real tokens see the pads."""
    path = tmp_path_factory.mktemp("left") / "rows.parquet"
    pq.write_table(pad_rows(random_docs(1, 4), 12, PAD, "left"), path)
    return path


def _verify(runner, path: Path, model: Path, *args: str):
    return runner.invoke(
        main,
        ["verify", str(path), "-m", str(model), "--trust-remote-code", "--from-config",
         "--attn-implementation", "eager", "--json", *args],
    )  # fmt: skip


def test_a_remote_code_decoder_that_ignores_the_mask_is_caught(runner, remote, left_padded):
    result = _verify(runner, left_padded, remote["maskless"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "decoder"
    statuses = {c["probe"]: c["status"] for c in report["checks"]}
    assert statuses["pad_invariance"] == "LEAK"
    leak = next(c for c in report["checks"] if c["probe"] == "pad_invariance")
    assert leak["fix"] == "attention_mask" and "dropping attention_mask" in leak["note"]
    assert leak["max_diff"] > 100 * leak["tolerance"]


def test_the_same_remote_code_decoder_applying_the_mask_passes(runner, remote, left_padded):
    result = _verify(runner, left_padded, remote["masked"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "decoder" and report["ok"]
    pad = next(c for c in report["checks"] if c["probe"] == "pad_invariance")
    assert pad["status"] == "pass" and pad["control_diff"] > pad["tolerance"]


def test_a_remote_code_decoder_with_weights_loads_with_from_pretrained(runner, remote, tmp_path):
    """The usual layout: code, config and weights in one directory, loaded as transformers
    loads it (AutoModelForCausalLM through auto_map), not from its config."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(remote["masked"], trust_remote_code=True)
    model = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    model.save_pretrained(tmp_path / "weights")
    path = tmp_path / "rows.parquet"
    pq.write_table(pack_rows([random_docs(2, 3)], 30, PAD), path)
    result = runner.invoke(
        main, ["verify", str(path), "-m", str(tmp_path / "weights"), "--trust-remote-code"]
    )
    assert result.exit_code == 0, result.output
    assert "(decoder)" in result.stdout and "cross_document" in result.stdout


def test_a_remote_code_encoder_with_only_a_base_model(runner, remote, tmp_path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(3, 4), 12, PAD, "right"), path)
    result = _verify(runner, path, remote["encoder"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kind"] == "encoder"
    statuses = {c["probe"]: c["status"] for c in report["checks"]}
    assert statuses["pad_invariance"] == "pass" and statuses["causal"] == "skipped"
    assert statuses["labels_loss"] == "skipped"  # a base model computes no loss


def test_remote_code_needs_trust_and_broken_models_are_one_line(runner, remote, tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(4, 2), 12, PAD, "right"), path)
    untrusted = runner.invoke(main, ["verify", str(path), "-m", str(remote["masked"])])
    assert untrusted.exit_code == 2
    assert untrusted.output.startswith(f"Error: {remote['masked']}: cannot load the model config")
    # transformers' whole explanation on one line: its advice is on its second line.
    assert "trust_remote_code=True" in untrusted.output and untrusted.output.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "hidden_size": ')
    result = runner.invoke(main, ["verify", str(path), "-m", str(broken), "--from-config"])
    assert result.exit_code == 2 and "cannot load the model config" in result.output
    crashing = tmp_path / "crashing"
    files = {**REMOTE_DECODER, "modeling_maskless.py": "raise RuntimeError('no GPU here')\n"}
    _remote_dir(
        crashing,
        files,
        _llama_fields(model_type="maskless-llama"),
        {
            "AutoConfig": "configuration_maskless.MasklessConfig",
            "AutoModelForCausalLM": "modeling_maskless.MasklessForCausalLM",
        },
    )
    result = _verify(runner, path, crashing)
    assert result.exit_code == 2
    message = f"{crashing}: cannot load the model: no GPU here"
    assert result.stderr == f"Error: {message}\n"
    # With --json the failure is also one JSON object on stdout.
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": {"type": "ConfigError", "message": message, "exit_code": 2},
    }
    for outcome in (untrusted, result):
        assert "Traceback" not in outcome.output


def _model(kind: str):
    from test_verify import _model as build

    return build(kind)


def _first_feed(model: torch.nn.Module, run) -> dict:
    """The keyword arguments of the first forward pass ``run()`` makes on ``model``."""
    seen: list[dict] = []

    def record(_module, _args, kwargs):
        if not seen:
            seen.append(dict(kwargs))

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        assert run().ok
    finally:
        hook.remove()
    return seen[0]


def test_verify_feeds_exactly_what_the_collator_emits(tmp_path) -> None:
    """The feed of the base forward pass equals ``Collator.for_output(OUT, model=...)`` on the
    same rows, for packs (mask4d, the default form) and left-padded rows of GPT-2
    (position_ids counted over real tokens)."""
    from maskprep.collate import for_output

    cases = [
        ("llama", pack_rows([random_docs(5, 3), random_docs(6, 2)], 30, PAD), "right"),
        ("gpt2", pad_rows(random_docs(7, 2), 12, PAD, "left"), "left"),
    ]
    for kind, table, side in cases:
        output = write_output(tmp_path / kind, table, PAD, side)
        model = _model(kind)
        options = VerifyOptions(
            attn_implementations=("eager",), pack_forms=("mask4d",), rows=2, longest=0
        )
        fed = _first_feed(model, partial(verify, output, model, options))
        expected = for_output(output, model=model)(table.to_pylist())
        expected.pop("labels")
        assert set(fed) == set(expected), kind
        for name, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(fed[name], value), (kind, name)
            else:
                assert fed[name] == value, (kind, name)


def test_verify_rows_leaves_the_callers_model_as_it_was() -> None:
    """dtype, device, attention implementation, train/eval mode (per module), requires_grad,
    accumulated gradients, parameters and the global random state: all as before (#14)."""
    model = _model("llama")
    model.set_attn_implementation("eager")
    model.train()
    model.model.layers[0].eval()  # a mixed-mode model: each module's mode must come back
    model.lm_head.weight.requires_grad_(False)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.grad = torch.full_like(parameter, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()
    table = pack_rows([random_docs(8, 3)], 30, PAD)
    options = VerifyOptions(attn_implementations=("sdpa", "eager"), dtype="bfloat16")
    result = verify_rows(table, model, options)
    assert result.dtype == "bfloat16" and result.ok
    options = VerifyOptions(attn_implementations=("sdpa", "eager"))
    assert verify_rows(table, model, options).ok
    assert model.config._attn_implementation == "eager"
    assert next(model.parameters()).dtype == torch.float32
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    now = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(now) == set(grads) and all(torch.equal(now[n], grads[n]) for n in grads)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_model_built_from_config_leaves_the_random_state_alone(tmp_path) -> None:
    tiny_config("gpt2").save_pretrained(tmp_path / "gpt2")
    table = pad_rows(random_docs(9, 2), 12, PAD, "right")
    rng = torch.get_rng_state()
    options = VerifyOptions(from_config=True, attn_implementations=("eager",))
    first = verify_rows(table, tmp_path / "gpt2", options)
    assert torch.equal(torch.get_rng_state(), rng)
    second = verify_rows(table, tmp_path / "gpt2", options)
    assert [c.max_diff for c in first.checks] == [c.max_diff for c in second.checks]


def test_a_wide_vocabulary_is_compared_on_its_seeded_columns() -> None:
    """Vocabularies over 2048 ids: the attention probes' forward computes only the compared
    logit columns; the verdicts are the same as on the full logits, planted leaks included."""
    from transformers import LlamaForCausalLM

    from maskprep.verifying.probes import OUTPUT_COLUMNS, sliced_head

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config("llama", vocab_size=5000)).eval()
    head = sliced_head(model, 5000)
    assert head is not None and head["lm_head.weight"].shape == (OUTPUT_COLUMNS, 32)
    assert sliced_head(_model("llama"), 300) is None
    table = pack_rows([random_docs(10, 3, high=5000), random_docs(11, 2, high=5000)], 30, PAD)
    options = VerifyOptions(attn_implementations=("eager",), pack_forms=("mask4d", "mask2d"))
    result = verify_rows(table, model, options)
    statuses = {(c.probe, c.form): c.status for c in result.checks}
    assert statuses[("cross_document", "mask4d")] == "pass"
    assert statuses[("cross_document", "mask2d")] == "LEAK"
    assert all(c.control_diff > c.tolerance for c in result.checks if c.status == "pass"
               and c.control_diff is not None)  # fmt: skip


def test_outside_a_terminal_transformers_says_nothing_on_stderr(minilm, tmp_path) -> None:
    """The real MiniLM loaded with from_pretrained (its fresh LM head, a 'Loading weights' bar,
    config deprecation warnings): nothing of it reaches stderr in a pipe."""
    from conftest import run_maskprep

    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows([[101, 2023, 2003, 102], [101, 7592, 102]], 6, 0, "right"), path)
    done = run_maskprep("verify", str(path), "-m", str(minilm), "--rows", "2", "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    assert json.loads(done.stdout)["kind"] == "encoder"


def test_verify_puts_transformers_logging_back() -> None:
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    table = pad_rows(random_docs(12, 2), 12, PAD, "right")
    verify_rows(table, _model("bert"), VerifyOptions(attn_implementations=("eager",)))
    assert (logging.get_verbosity(), logging.is_progress_bar_enabled()) == (level, bars)


def test_a_missing_local_model_is_no_such_directory(runner, tmp_path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(13, 2), 12, PAD, "right"), path)
    missing = tmp_path / "no" / "model"
    for command in (["verify", str(path), "-m", str(missing)],
                    ["inspect", str(path), "--model", str(missing)]):  # fmt: skip
        result = runner.invoke(main, command)
        assert (result.exit_code, result.output) == (
            2,
            f"Error: {missing}: no such directory (a local model is a directory; a Hub name is "
            "'name' or 'namespace/name')\n",
        )
    negative = runner.invoke(main, ["verify", str(path), "-m", str(missing), "--seed", "-1"])
    assert negative.exit_code == 2 and "--seed" in negative.output


def test_inspect_reads_a_remote_code_model_only_when_trusted(runner, remote, tmp_path) -> None:
    """``inspect --model`` takes ``--trust-remote-code`` and ``--revision`` as ``verify`` does."""
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(5, 3), 12, PAD, "right"), path)
    untrusted = runner.invoke(main, ["inspect", str(path), "--model", str(remote["masked"])])
    assert untrusted.exit_code == 2, untrusted.output
    assert untrusted.output.startswith(f"Error: {remote['masked']}: cannot load the model config")
    assert untrusted.output.count("\n") == 1
    args = ["inspect", str(path), "--model", str(remote["masked"]), "--trust-remote-code"]
    trusted = runner.invoke(main, [*args, "--revision", "main", "--json"])
    assert trusted.exit_code == 0, trusted.output
    checks = {c["name"]: c for c in json.loads(trusted.stdout)["checks"]}
    # Rows without a manifest or tokenizer: only the model read can give a context length.
    assert checks["model_context"]["status"] == "pass"


def test_inspect_passes_the_revision_to_transformers(runner, remote, tmp_path, monkeypatch):
    from transformers import AutoConfig

    asked: list[dict] = []
    load = AutoConfig.from_pretrained

    def recording(name, **kwargs):
        asked.append(kwargs)
        return load(name, **kwargs)

    monkeypatch.setattr(AutoConfig, "from_pretrained", recording)
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(6, 3), 12, PAD, "right"), path)
    args = ["--model", str(remote["masked"]), "--trust-remote-code", "--revision", "v1.0"]
    result = runner.invoke(main, ["inspect", str(path), *args])
    assert result.exit_code == 0, result.output
    assert {"revision": "v1.0", "trust_remote_code": True}.items() <= asked[0].items()


def test_inspect_model_options_without_a_model_are_a_usage_error(runner, tmp_path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pad_rows(random_docs(7, 3), 12, PAD, "right"), path)
    for extra in (["--trust-remote-code"], ["--revision", "main"]):
        result = runner.invoke(main, ["inspect", str(path), *extra])
        assert result.exit_code == 2, result.output
        assert result.output == (
            "Error: a model revision or trusting its code needs a model to check against\n"
        )
