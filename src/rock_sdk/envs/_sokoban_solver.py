"""An optimal Sokoban solver (fewest moves), used to check generated levels.

A* over push states: a state is (boxes, player); a transition is "walk to the cell behind a
box, then push it once", costing the walk's length plus one. The heuristic, the sum over
boxes of the distance to the nearest target, is consistent (a push moves one box one cell
for at least one move), so the first solved state popped is optimal. Pushes onto cells from
which no box can ever reach a target are pruned; that never removes a solution.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable

from ._sokoban_level import offsets
from ._sokoban_level import walks as walks_from

__all__ = ["solve"]


def solve(
    floor: Iterable[int],
    targets: Iterable[int],
    boxes: Iterable[int],
    player: int,
    width: int,
    max_states: int = 500_000,
) -> list[str] | None:
    """The shortest move list solving the position, or None if none (or too many states)."""
    floor_set = frozenset(floor)
    target_set = frozenset(targets)
    step_of = offsets(width)
    live = _live_cells(floor_set, target_set, step_of)
    start = (tuple(sorted(boxes)), player)
    parent: dict[tuple[tuple[int, ...], int], tuple[tuple[tuple[int, ...], int], str] | None] = {
        start: None
    }
    best_cost = {start: 0}
    counter = 0
    frontier = [(_estimate(start[0], target_set, width), 0, counter, start)]
    while frontier:
        _, cost, _, state = heapq.heappop(frontier)
        if cost > best_cost[state]:
            continue
        box_cells, at = state
        if target_set.issuperset(box_cells):
            return _moves(parent, state)
        if len(best_cost) > max_states:
            return None
        box_set = frozenset(box_cells)
        walks = walks_from(at, floor_set, box_set, step_of)
        for box in box_cells:
            for name, delta in step_of.items():
                stand, dest = box - delta, box + delta
                if stand not in walks or dest not in live or dest in box_set:
                    continue
                moved = tuple(sorted(dest if cell == box else cell for cell in box_cells))
                successor = (moved, box)
                successor_cost = cost + len(walks[stand]) + 1
                if successor_cost >= best_cost.get(successor, successor_cost + 1):
                    continue
                best_cost[successor] = successor_cost
                parent[successor] = (state, walks[stand] + name[0])
                counter += 1
                priority = successor_cost + _estimate(moved, target_set, width)
                heapq.heappush(frontier, (priority, successor_cost, counter, successor))
    return None


def _live_cells(
    floor: frozenset[int], targets: frozenset[int], step_of: dict[str, int]
) -> frozenset[int]:
    """Cells from which a lone box can still be pushed onto some target."""
    live = set(targets)
    queue = deque(targets)
    while queue:
        cell = queue.popleft()
        for delta in step_of.values():
            # A box at `before` reaches `cell` when the player pushes it from `stand`.
            before, stand = cell - delta, cell - 2 * delta
            if before in floor and stand in floor and before not in live:
                live.add(before)
                queue.append(before)
    return frozenset(live)


def _estimate(boxes: tuple[int, ...], targets: frozenset[int], width: int) -> int:
    return sum(
        min(abs(box // width - t // width) + abs(box % width - t % width) for t in targets)
        for box in boxes
    )


_INITIALS = {"u": "up", "d": "down", "l": "left", "r": "right"}


def _moves(
    parent: dict[tuple[tuple[int, ...], int], tuple[tuple[tuple[int, ...], int], str] | None],
    state: tuple[tuple[int, ...], int],
) -> list[str]:
    pieces: list[str] = []
    link = parent[state]
    while link is not None:
        state, piece = link
        pieces.append(piece)
        link = parent[state]
    return [_INITIALS[initial] for piece in reversed(pieces) for initial in piece]
