"""#14, ``maskprep.verify`` with the caller's own model object: it probes under the dtype and
attention implementations asked for, and hands the model back as it came (dtype, attention
implementation, train/eval mode, weights, gradients)."""

from __future__ import annotations

import pytest

import maskprep
from maskprep import VerifyOptions

pytestmark = pytest.mark.integration

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def probed(finished):
    """A tiny random Llama in bfloat16 with SDPA, in train mode, before and after verify probes
    it in float32 with eager attention."""
    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.train()

    def state() -> dict:
        return {
            "dtype": model.dtype,
            "device": next(model.parameters()).device,
            "attn": model.config._attn_implementation,
            "training": model.training,
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "grads": sum(p.grad is not None for p in model.parameters()),
        }

    before = state()
    options = VerifyOptions(device="cpu", dtype="float32", attn_implementations=("eager",), rows=2)
    result = maskprep.verify(finished, model, options)
    return before, state(), result


def test_verify_ran_in_the_dtype_asked_for(probed):
    """The probes did run as asked (float32): the checks below are about handing back."""
    _, _, result = probed
    assert result.dtype == "float32"
    assert any(c.status != "skipped" for c in result.checks)


def test_verify_leaves_the_callers_dtype(probed):
    before, after, _ = probed
    assert after["dtype"] == before["dtype"] == torch.bfloat16


def test_verify_leaves_the_callers_attention_implementation(probed):
    before, after, _ = probed
    assert after["attn"] == before["attn"] == "sdpa"


def test_verify_leaves_the_callers_train_mode(probed):
    before, after, _ = probed
    assert after["training"] is before["training"] is True


def test_verify_leaves_the_callers_device_weights_and_gradients(probed):
    """Device: only CPU here (a CUDA machine would move a CPU model to cuda with device auto)."""
    before, after, _ = probed
    assert after["device"] == before["device"]
    assert after["grads"] == before["grads"] == 0
    assert after["weights"].keys() == before["weights"].keys()
    for name, value in before["weights"].items():
        assert torch.equal(after["weights"][name].to(value.dtype), value), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_verify_on_cuda_leaves_a_cpu_model_on_the_cpu(finished):
    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    model = transformers.LlamaForCausalLM(config)
    options = VerifyOptions(device="cuda", attn_implementations=("eager",), rows=2)
    maskprep.verify(finished, model, options)
    assert next(model.parameters()).device.type == "cpu"
