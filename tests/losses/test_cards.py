"""A loss file = the ``Loss`` (arithmetic and its own parameters) + a registered ``LossCard`` (the benchmark's facts):
every registered loss has a card, every card a loss, and no loss class carries a benchmark fact."""

from __future__ import annotations

import dataclasses

import pytest

from rece_bench.errors import UserError
from rece_bench.losses import LOSSES, Loss
from rece_bench.losses.base import describe_losses, ordered_losses
from rece_bench.losses.cards import CARDS, Ladder, LossCard, abbreviate, card_for, register_card

# The benchmark's facts: the fields of a card. A loss class (or its base) holding one of them again is the
# benchmark creeping back into the nn.Module a user imports into their own model.
CARD_FACTS = tuple(f.name for f in dataclasses.fields(LossCard) if f.name != "name")


def test_the_card_holds_the_benchmark_facts():
    assert set(CARD_FACTS) == {"label", "abbreviations", "ladder", "report_rank", "paper_presets", "paper_results"}


def test_every_registered_loss_has_a_card_and_every_card_a_loss():
    assert set(CARDS) == set(LOSSES)
    for name, card in CARDS.items():
        assert card.name == name
        assert LOSSES[name].__module__ == f"rece_bench.losses.{name}"  # registered in its loss's file


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_loss_class_holds_no_benchmark_fact(name):
    for cls in LOSSES[name].__mro__:  # the class, its shared bases (ExcludingSampledLoss) and Loss itself
        held = sorted(fact for fact in CARD_FACTS if fact in vars(cls))
        assert not held, f"{cls.__qualname__} holds {held}: put them on the card of {name!r}"


def test_the_base_loss_holds_no_benchmark_fact():
    assert not [fact for fact in CARD_FACTS if hasattr(Loss, fact)]


def test_the_cards_feed_the_listing_order_and_labels():
    names = [cls.name for cls in ordered_losses()]
    ranks = [CARDS[name].report_rank for name in names]
    assert ranks == sorted(ranks) and names[:3] == ["bce", "gbce", "ce_neg"]  # the paper's order first
    labels = {info.name: info.label for info in describe_losses()}
    assert labels == {name: card.label for name, card in CARDS.items()}
    assert labels["rece"] == "RECE" and labels["ce_neg"] == "CE-"


def test_abbreviations_come_from_the_cards():
    assert abbreviate("n_extra_chunks") == "n_ec" and abbreviate("n_extra_chunks", "rece") == "n_ec"
    assert abbreviate("bucket_size_y") == "b_y" and abbreviate("batch_size") == "batch"
    assert abbreviate("n_negatives", "bce") == "k" and abbreviate("no_such_knob") == "no_such_knob"


def test_a_card_is_registered_once_and_looked_up_by_name():
    with pytest.raises(RuntimeError, match="loss card 'rece' registered twice"):
        register_card(LossCard(name="rece"))
    assert card_for("rece") is CARDS["rece"]
    with pytest.raises(UserError, match="unknown loss 'nosuch': choose one of "):
        card_for("nosuch")


def test_a_card_refuses_a_paper_row_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"paper_results\['gowalla'\] has 2 numbers, not 5"):
        LossCard(name="x", paper_results={"gowalla": (0.1, 0.2)})
    with pytest.raises(ValueError, match="needs the name"):
        LossCard(name="")


def test_the_exact_ces_share_the_ce_card_facts():
    for name in ("ce_chunked", "cce", "liger_ce"):
        assert CARDS[name].ladder is CARDS["ce"].ladder and isinstance(CARDS[name].ladder, Ladder)
        assert CARDS[name].paper_presets == CARDS["ce"].paper_presets
