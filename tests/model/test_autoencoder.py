"""The autoencoder: tied weights, dropout placement, activations, architecture checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deeprec.errors import ConfigError
from deeprec.model.activations import ACTIVATIONS, get_activation
from deeprec.model.autoencoder import AutoEncoder


def test_tied_decoder_is_a_transposed_view_of_the_encoder_parameter() -> None:
    model = AutoEncoder(10, [6, 4], constrained=True)
    for i in range(2):
        dec = model.decoder_weight(i)
        enc = model.encoder_weights[1 - i]
        assert dec.shape == enc.t().shape
        assert dec.data_ptr() == enc.data_ptr()  # same storage, not a copy
        assert dec._base is enc
    # only encoder matrices are parameters: 2 weights + 2 encoder biases + 2 decoder biases
    weights = [p for p in model.parameters() if p.dim() == 2]
    assert len(weights) == 2
    assert sum(p.numel() for p in model.parameters()) == 10 * 6 + 6 * 4 + 6 + 4 + 6 + 10
    # an update of the encoder is seen by the decoder, and both uses feed one gradient
    model(torch.rand(3, 10)).sum().backward()
    assert model.encoder_weights[0].grad is not None
    with torch.no_grad():
        model.encoder_weights[0].add_(1.0)
    assert torch.equal(model.decoder_weight(1), model.encoder_weights[0].t())


def test_free_decoder_has_its_own_weights() -> None:
    model = AutoEncoder(10, [6, 4], constrained=False)
    assert len([p for p in model.parameters() if p.dim() == 2]) == 4
    assert model.decoder_weight(1).data_ptr() != model.encoder_weights[0].data_ptr()


def _manual_code(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    h = x
    for w, b in zip(model.encoder_weights, model.encoder_biases, strict=True):
        h = torch.sigmoid(F.linear(h, w, b))
    return h


def _manual_decoder_hidden(model: AutoEncoder, z: torch.Tensor) -> torch.Tensor:
    for i in range(len(model.hidden) - 1):
        z = torch.sigmoid(F.linear(z, model.decoder_weight(i), model.decoder_biases[i]))
    return z


@pytest.mark.parametrize("placement", ["code", "all", "none"])
def test_dropout_only_where_asked(placement: str) -> None:
    torch.manual_seed(0)
    model = AutoEncoder(
        12, [40, 30], activation="sigmoid", dropout=0.5, dropout_placement=placement
    )
    x = torch.rand(50, 12)
    want = _manual_code(model, x)  # sigmoid outputs are never exactly 0
    model.train()
    code = model.encode(x)
    zero = code == 0
    kept_scaled = torch.isclose(code, 2 * want)  # inverted dropout scales by 1/(1-p)
    if placement == "none":
        torch.testing.assert_close(code, want)
    elif placement == "code":
        # the code layer is dropped, the layer before it is not: every entry is 0 or 2*f
        assert zero.any() and (zero | kept_scaled).all()
    else:
        # the first layer is dropped too, so surviving code entries differ from 2*f
        assert zero.any() and not (zero | kept_scaled).all()
    z = torch.rand(50, 30)
    dec = model.decode_hidden(z)
    if placement == "all":
        assert (dec == 0).any()
    else:
        torch.testing.assert_close(dec, _manual_decoder_hidden(model, z))
    # the output layer is never dropped, and eval mode turns dropout off everywhere
    model.eval()
    torch.testing.assert_close(model.encode(x), want)
    out1, out2 = model(x), model(x)
    assert torch.equal(out1, out2)


def test_zero_dropout_is_no_dropout() -> None:
    model = AutoEncoder(8, [5], activation="sigmoid", dropout=0.0, dropout_placement="all")
    model.train()
    x = torch.rand(4, 8)
    assert torch.equal(model(x), model(x))


REFERENCE = {
    "sigmoid": torch.sigmoid,
    "relu": lambda x: x.clamp_min(0),
    "relu6": lambda x: x.clamp(0, 6),
    "tanh": torch.tanh,
    "elu": lambda x: torch.where(x > 0, x, torch.expm1(x)),
    "lrelu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "selu": lambda x: (
        1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * torch.expm1(x))
    ),
    "swish": lambda x: x * torch.sigmoid(x),
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_computes_its_function_and_trains(name: str) -> None:
    x = torch.linspace(-8, 8, 101)
    torch.testing.assert_close(get_activation(name)(x), REFERENCE[name](x), rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    model = AutoEncoder(7, [5, 3], activation=name, last_activation=name, dropout=0.1)
    out = model(torch.rand(4, 7) * 5)
    assert out.shape == (4, 7)
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_activation_names_match_the_issue() -> None:
    assert set(ACTIVATIONS) == {
        "sigmoid", "relu", "relu6", "tanh", "elu", "lrelu", "selu", "swish", "identity",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n_inputs": 0, "hidden": [4]}, "input"),
        ({"n_inputs": 5, "hidden": []}, "hidden"),
        ({"n_inputs": 5, "hidden": [4, 0]}, "hidden"),
        ({"n_inputs": 5, "hidden": [4, -2]}, "hidden"),
        ({"n_inputs": 5, "hidden": [4], "dropout": 1.0}, "dropout"),
        ({"n_inputs": 5, "hidden": [4], "dropout_placement": "input"}, "dropout_placement"),
        ({"n_inputs": 5, "hidden": [4], "activation": "gelu"}, "activation"),
    ],
)
def test_impossible_architectures_raise_config_error(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        AutoEncoder(**kwargs)


def test_xavier_initialisation_and_zero_biases() -> None:
    torch.manual_seed(0)
    model = AutoEncoder(300, [200])
    bound = (6 / (300 + 200)) ** 0.5
    w = model.encoder_weights[0]
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert all(torch.count_nonzero(b) == 0 for b in model.encoder_biases)
    assert model.architecture() == "300,200,300"


def test_input_row_scale_divides_each_row_by_the_root_of_its_nonzeros() -> None:
    x = torch.tensor([[4.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 3.0, 5.0, 2.0]])
    model = AutoEncoder(4, [3], input_row_scale=2.0)
    expected = torch.stack([x[0] * 2.0 / 2**0.5, x[1], x[2] * 2.0 / 2.0])
    torch.testing.assert_close(model.scale_inputs(x), expected)
    torch.testing.assert_close(model.encode(x), model.act(F.linear(expected, *_first(model))))
    off = AutoEncoder(4, [3])
    assert off.input_row_scale == 0.0 and off.scale_inputs(x) is x  # default: unchanged
    with pytest.raises(ConfigError, match="input_row_scale"):
        AutoEncoder(4, [3], input_row_scale=-1.0)


def _first(model: AutoEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    return model.encoder_weights[0], model.encoder_biases[0]


def test_rated_indicator_adds_a_first_layer_term_for_the_nonzero_pattern() -> None:
    x = torch.tensor([[4.0, 0.0, 2.0, 0.0], [0.0, -1.5, 0.0, 0.0]])
    model = AutoEncoder(4, [3, 2], rated_indicator=True, input_row_scale=2.0)
    rated = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    z = F.linear(model.scale_inputs(x), *_first(model)) + rated @ model.indicator_weight.t()
    h = model.act(F.linear(model.act(z), model.encoder_weights[1], model.encoder_biases[1]))
    torch.testing.assert_close(model.encode(x), h)
    assert "indicator_weight" in model.state_dict()
    assert model.indicator_weight.shape == model.encoder_weights[0].shape
    assert "+rated" in model.architecture()
    model(x).sum().backward()
    assert model.indicator_weight.grad is not None and model.indicator_weight.grad.abs().sum() > 0
    plain = AutoEncoder(4, [3, 2])
    assert plain.indicator_weight is None and "indicator_weight" not in plain.state_dict()


def test_rated_indicator_leaves_the_other_initial_weights_unchanged() -> None:
    torch.manual_seed(0)
    plain = AutoEncoder(6, [4], input_row_scale=0.0)
    torch.manual_seed(0)
    with_indicator = AutoEncoder(6, [4], rated_indicator=True)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, with_indicator.state_dict()[name]), name
