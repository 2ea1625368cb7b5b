import pytest
import torch

from rece_bench.errors import UserError
from rece_bench.models.sasrec import SASRec, SASRecConfig


def _model(max_len=8, **kw):
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=30, max_len=max_len, dim=16, n_blocks=2, n_heads=2, dropout=0.3, **kw))
    return model.eval().double()


def test_output_at_position_i_ignores_later_items():
    model = _model()
    seq = torch.tensor([[0, 0, 3, 7, 1, 9, 4, 2]])
    changed = seq.clone()
    changed[0, 5:] = torch.tensor([11, 12, 13])
    with torch.no_grad():
        a, b = model(seq), model(changed)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-12)
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_leading_padding_does_not_change_real_positions():
    # The same items, once with 5 pads in a max_len-8 model, once unpadded in a max_len-3 model that shares the
    # weights and the last 3 positional embeddings: positions are anchored at the end, pads are ignored.
    long_model = _model(max_len=8)
    short_model = _model(max_len=3)
    state = long_model.state_dict()
    state["pos_emb.weight"] = state["pos_emb.weight"][-3:]
    short_model.load_state_dict(state)
    with torch.no_grad():
        padded = long_model(torch.tensor([[0, 0, 0, 0, 0, 5, 6, 7]]))
        unpadded = short_model(torch.tensor([[5, 6, 7]]))
    assert torch.allclose(padded[0, -3:], unpadded[0], atol=1e-10)
    assert torch.isfinite(padded).all()


def test_batch_rows_are_independent():
    model = _model()
    a = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5]])
    b = torch.tensor([[9, 8, 7, 6, 5, 4, 3, 2]])
    with torch.no_grad():
        alone = model(a)
        together = model(torch.cat([a, b]))
    assert torch.allclose(alone[0], together[0], atol=1e-12)


def test_item_table_holds_the_catalogue_and_is_tied_to_the_inputs():
    model = _model()
    assert model.item_embeddings() is model.item_emb and model.item_emb.shape == (30, 16)
    seq = torch.tensor([[0, 0, 0, 3, 7, 9, 4, 2]])  # pads look up row 0; item 1 (row 0) is not in the sequence
    probe = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grad = torch.autograd.grad((model(seq) * probe).sum(), model.item_emb)[0]
    assert torch.all(grad[0] == 0)  # pads give row 0 nothing back
    assert torch.all(grad[[2, 6, 8, 3, 1]].abs().sum(dim=1) > 0)  # items 3, 7, 9, 4, 2 -> rows 2, 6, 8, 3, 1
    untouched = torch.ones(30, dtype=torch.bool)
    untouched[[2, 6, 8, 3, 1]] = False
    assert torch.all(grad[untouched] == 0)


@pytest.mark.parametrize("field,value", [("num_items", 0), ("dim", -1), ("dropout", 1.0), ("n_heads", 3)])
def test_bad_config_names_the_field(field, value):
    kwargs = dict(num_items=10, dim=16, n_heads=2)
    kwargs[field] = value
    with pytest.raises(UserError, match=field if field != "n_heads" else "divisible"):
        SASRecConfig(**kwargs)
