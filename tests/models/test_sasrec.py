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


def test_item_embeddings_skip_the_pad_row_and_are_tied():
    model = _model()
    assert model.item_embeddings().shape == (30, 16)
    assert model.item_embeddings().data_ptr() == model.item_emb.weight[1:].data_ptr()
    assert torch.all(model.item_emb.weight[0] == 0)


@pytest.mark.parametrize("field,value", [("num_items", 0), ("dim", -1), ("dropout", 1.0), ("n_heads", 3)])
def test_bad_config_names_the_field(field, value):
    kwargs = dict(num_items=10, dim=16, n_heads=2)
    kwargs[field] = value
    with pytest.raises(UserError, match=field if field != "n_heads" else "divisible"):
        SASRecConfig(**kwargs)
