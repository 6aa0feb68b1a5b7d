"""Sokoban levels, made by reverse play so every level is solvable by construction.

How a level is made:
1. Carve a connected floor out of a walled room with a random walk (the outer ring stays wall).
2. Put every box on its own target and the player on another floor cell.
3. Play backwards: the player walks to a box and pulls it (steps away from it, dragging it
   along). Every backward step undone is a legal forward step (a pull undone is a push), so
   the reversed moves solve the level.
4. Keep the best-scoring state among those where no box sits on a target. The backward game
   never spends more than ``max_moves`` moves, so the recorded solution never needs more
   moves than the episode allows.

Cells are numbered ``row * width + col``; moving by a direction adds its offset.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Container
from dataclasses import dataclass

from rock_core import BadRequest

from ._grid import DIRECTIONS, OPPOSITE

__all__ = ["NAME_OF", "Level", "generate_level", "offsets", "walks"]

#: The direction each initial of a `walks` path stands for.
NAME_OF = {name[0]: name for name in DIRECTIONS}

_WALKS_PER_ROOM = 12
_ROOM_TRIES = 200


@dataclass(frozen=True, slots=True)
class Level:
    """A Sokoban start state and one known solution."""

    height: int
    width: int
    floor: frozenset[int]
    targets: frozenset[int]
    boxes: frozenset[int]
    player: int
    #: A forward solution (directions), at most the move budget the level was made for.
    solution: tuple[str, ...]


def offsets(width: int) -> dict[str, int]:
    """The cell-number change of each direction in a room `width` cells wide."""
    return {name: dr * width + dc for name, (dr, dc) in DIRECTIONS.items()}


def generate_level(
    rng: random.Random, height: int, width: int, num_boxes: int, max_moves: int
) -> Level:
    """A level solvable in at most `max_moves` moves, drawn from `rng` alone."""
    steps = int(1.7 * (height + width))
    for _ in range(_ROOM_TRIES):
        floor = _carve_floor(rng, height, width, steps)
        if len(floor) < num_boxes + 2:
            continue
        cells = sorted(floor)
        targets = frozenset(rng.sample(cells, num_boxes))
        player = rng.choice([cell for cell in cells if cell not in targets])
        best: tuple[int, frozenset[int], int, tuple[str, ...]] | None = None
        for _ in range(_WALKS_PER_ROOM):
            found = _reverse_play(rng, width, floor, targets, player, max_moves)
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        if best is not None:
            _, boxes, start, solution = best
            return Level(height, width, floor, targets, boxes, start, solution)
    raise BadRequest(
        f"could not make a Sokoban level of {height}x{width} with {num_boxes} boxes "
        f"solvable in {max_moves} moves; use a larger room, fewer boxes or more turns"
    )


def _carve_floor(rng: random.Random, height: int, width: int, steps: int) -> frozenset[int]:
    """A connected floor: a random walk that clears its path and a random brush around it."""
    names = list(DIRECTIONS)
    row, col = rng.randint(1, height - 2), rng.randint(1, width - 2)
    direction = rng.choice(names)
    floor: set[int] = set()
    for _ in range(steps):
        if rng.random() < 0.35:
            direction = rng.choice(names)
        dr, dc = DIRECTIONS[direction]
        row = min(max(row + dr, 1), height - 2)
        col = min(max(col + dc, 1), width - 2)
        floor.add(row * width + col)
        # The brush widens corridors into rooms; every cell it clears touches the path.
        for br, bc in rng.choice(_BRUSHES):
            r, c = row + br, col + bc
            if 1 <= r <= height - 2 and 1 <= c <= width - 2:
                floor.add(r * width + c)
    return frozenset(floor)


_BRUSHES: tuple[tuple[tuple[int, int], ...], ...] = (
    (),
    ((0, 1),),
    ((1, 0),),
    ((0, -1), (0, 1)),
    ((-1, 0), (1, 0)),
    ((0, 1), (1, 0), (1, 1)),
)


def _reverse_play(
    rng: random.Random,
    width: int,
    floor: frozenset[int],
    targets: frozenset[int],
    player: int,
    max_moves: int,
) -> tuple[int, frozenset[int], int, tuple[str, ...]] | None:
    """One backward game; the best (score, boxes, player, solution) it passed, if any.

    Each round walks the player to a box along a shortest path and pulls it one or more
    cells, until the move budget is spent or no pull fits in it. The score, total box
    displacement times the number of times the pulled box changed, favours levels where
    boxes must be interleaved.
    """
    step_of = offsets(width)
    origin = {box: box for box in targets}  # current cell -> the target it started on
    backward: list[str] = []
    best: tuple[int, frozenset[int], int, tuple[str, ...]] | None = None
    switches, last_pulled = 0, -1
    while True:
        paths = walks(player, floor, origin.keys(), step_of)
        pulls = [
            (box, name)
            for box in origin
            for name, delta in step_of.items()
            if box + delta in paths
            and box + 2 * delta in floor
            and box + 2 * delta not in origin
            and len(backward) + len(paths[box + delta]) + 1 <= max_moves
        ]
        if not pulls:
            return best
        still_home = [pull for pull in pulls if origin[pull[0]] == pull[0]]
        box, name = rng.choice(still_home if still_home and rng.random() < 0.5 else pulls)
        delta = step_of[name]
        backward.extend(NAME_OF[initial] for initial in paths[box + delta])
        player = box + delta
        if origin[box] != last_pulled:
            switches, last_pulled = switches + 1, origin[box]
        budget = max_moves - len(backward)
        length = rng.randint(1, max(1, min(budget, 4)))
        for _ in range(length):
            ahead = player + delta
            if budget == 0 or ahead not in floor or ahead in origin:
                break
            origin[player] = origin.pop(player - delta)
            player = ahead
            backward.append(name)
            budget -= 1
        if targets.isdisjoint(origin):
            displacement = sum(_distance(cell, home, width) for cell, home in origin.items())
            score = displacement * switches
            if best is None or score > best[0]:
                solution = tuple(OPPOSITE[move] for move in reversed(backward))
                best = (score, frozenset(origin), player, solution)


def walks(
    start: int, floor: frozenset[int], boxes: Container[int], step_of: dict[str, int]
) -> dict[int, str]:
    """Every cell the player reaches without touching a box, with a shortest path to it.

    Paths are strings of direction initials (u, d, l, r: see `NAME_OF`) to keep the solver's
    search light.
    """
    paths = {start: ""}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for name, delta in step_of.items():
            nxt = cell + delta
            if nxt in floor and nxt not in boxes and nxt not in paths:
                paths[nxt] = paths[cell] + name[0]
                queue.append(nxt)
    return paths


def _distance(a: int, b: int, width: int) -> int:
    return abs(a // width - b // width) + abs(a % width - b % width)
