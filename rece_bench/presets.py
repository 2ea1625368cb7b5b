"""The authors' best configurations, for ``run --preset paper``: each loss's card declares them
(``LossCard.paper_presets``: dataset kind -> batch size, loss parameters, and the model fields that differ from the
paper's SASRec setup).

Every preset starts from the SASRec setup of the paper: d 64, 2 blocks, 1 head, dropout 0.3, maxlen 200, Adam 1e-3
(REFERENCE sections 1 and 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rece_bench.errors import UserError

PAPER_MODEL = {"dim": 64, "n_blocks": 2, "n_heads": 1, "dropout": 0.3, "max_len": 200, "lr": 1e-3}


def paper_preset(dataset_kind: str, loss: str) -> dict[str, Any]:
    """TrainConfig fields of the authors' configuration for a dataset kind (the registry name) and a loss."""
    from rece_bench.losses.cards import CARDS, card_for

    preset = card_for(loss).paper_presets.get(dataset_kind)
    if preset is None:
        known = ", ".join(sorted(f"{kind}/{name}" for name, card in CARDS.items() for kind in card.paper_presets))
        raise UserError(f"the paper has no configuration for {dataset_kind}/{loss}: drop --preset, or use {known}")
    fields = {**PAPER_MODEL, **{k: v for k, v in preset.items() if k != "loss_params"}}
    return {**fields, "loss_params": dict(preset.get("loss_params", {}))}


def run_fields(given: dict[str, Any], preset: str | None, data_root: Path, dataset: str, loss: str) -> dict[str, Any]:
    """TrainConfig fields of a run: explicit options (``given``; None: not given) win over the preset, the preset
    over ``TrainConfig``'s defaults; ``given["loss_params"]`` merges over the preset's loss parameters. The preset
    of a prepared dataset is its kind's (``meta.json``'s ``like``: synth-gowalla takes gowalla's). Fields left out
    keep the dataclass's defaults."""
    fields: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if preset is not None:
        if preset != "paper":
            raise UserError(f"unknown --preset {preset!r}: the only preset is 'paper'")
        from rece_bench.data.store import read_meta  # imports pandas: here, so that `rece-bench --help` stays fast

        meta = read_meta(data_root, dataset)
        chosen = paper_preset(meta.get("like") or meta.get("dataset", dataset), loss)
        params = chosen.pop("loss_params")
        fields.update(chosen)
    fields.update({key: value for key, value in given.items() if value is not None and key != "loss_params"})
    fields["loss_params"] = {**params, **given.get("loss_params", {})}
    return fields
