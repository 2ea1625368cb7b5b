import pandas as pd
import torch

from rece_bench.data.loader import build_eval_set, build_train_sequences, iterate_batches


def test_train_sequences_take_the_last_max_len_plus_one_items_left_padded():
    train = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1, 2, 2, 3],
            "item_id": [5, 6, 7, 8, 5, 9, 4, 3],
            "timestamp": [1, 2, 3, 4, 5, 1, 2, 1],
        }
    )
    seqs = build_train_sequences(train, max_len=3)
    # user 1: last 4 = 6 7 8 5 -> input 6 7 8, targets 7 8 5; user 2: 9 4 -> input 0 0 9, target 0 0 4
    # user 3 has one item and is skipped
    assert seqs.inputs.tolist() == [[6, 7, 8], [0, 0, 9]]
    assert seqs.targets.tolist() == [[7, 8, 5], [0, 0, 4]]
    seen = seqs.seen.padded_rows(torch.tensor([0, 1]))
    assert sorted(x for x in seen[0].tolist() if x >= 0) == [4, 5, 6, 7]  # 0-based: items 5, 6, 7, 8
    assert sorted(x for x in seen[1].tolist() if x >= 0) == [3, 8]


def test_batches_drop_the_incomplete_tail_and_cover_distinct_users():
    train = pd.DataFrame({"user_id": [u for u in range(1, 8) for _ in range(2)],
                          "item_id": list(range(1, 15)), "timestamp": [0, 1] * 7})  # fmt: skip
    seqs = build_train_sequences(train, max_len=2)
    batches = list(iterate_batches(seqs, 3, torch.Generator().manual_seed(0)))
    assert len(batches) == 2 and all(b.inputs.shape == (3, 2) for b in batches)
    firsts = torch.cat([b.inputs[:, -1] for b in batches]).tolist()
    assert len(set(firsts)) == 6


def test_eval_set_input_target_and_exclusions():
    frame = pd.DataFrame(
        {
            "user_id": [4, 4, 4, 7, 7],
            "item_id": [2, 3, 9, 5, 1],
            "timestamp": [10, 11, 12, 3, 4],
            "is_target": [False, False, True, False, True],
        }
    )
    ev = build_eval_set(frame, max_len=3)
    assert ev.inputs.tolist() == [[0, 2, 3], [0, 0, 5]]
    assert ev.targets.tolist() == [9, 1]
    assert ev.exclude.padded_rows(torch.tensor([0, 1])).tolist() == [[2, 3], [5, -1]]
