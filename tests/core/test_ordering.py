"""Ordered keys' queues (``streams.core.ordering``) against a plain model: per key, a list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.core.ordering import KeyQueues

MOVE = st.tuples(
    st.sampled_from(["enter", "leave"]), st.sampled_from(["k1", "k2", "k3"]), st.integers(0, 9)
)
MOVES = st.lists(MOVE, max_size=80)


@given(MOVES)
def test_each_key_has_one_head_in_arrival_order_and_hands_its_turn_on(
    moves: list[tuple[str, str, int]],
) -> None:
    queues = KeyQueues()
    model: dict[str, list[str]] = {}
    for move, key, number in moves:
        task_id = f"{key}-t{number}"
        line = model.setdefault(key, [])
        if move == "enter":
            if task_id in line[1:]:
                continue  # already behind: a core drops such a delivery before it gets here
            may_go = queues.enter(key, task_id)
            assert may_go == (not line or line[0] == task_id)
            if not line or line[0] != task_id:
                line.append(task_id)
        else:
            turn = queues.leave(key, task_id)
            was_head = bool(line) and line[0] == task_id
            if task_id in line:
                line.remove(task_id)
            assert turn == (line[0] if was_head and line else None)
        assert queues.head(key) == (line[0] if line else None)
        assert queues.behind == sum(max(0, len(each) - 1) for each in model.values())
        assert len(queues) == sum(1 for each in model.values() if each)
