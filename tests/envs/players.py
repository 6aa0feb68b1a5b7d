"""Scripted players for the convention tests: one per game, written from the rules alone.

Each player knows, for its game's easy variant:
- ``unreadable``: a boxed answer that is not a move at all (a format error);
- ``illegal(env)``: a readable move the rules refuse in the current state (None if the state
  has none, in which case the test tries another seed);
- ``win(env)``: plays until the game is won, returning the last step;
- ``stall(env)``: plays legal-or-illegal non-winning moves until the turn limit, returning the
  last step and the partial credit the player expects, computed by its own reckoning.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterator
from itertools import pairwise, permutations
from typing import Any, ClassVar

from rock_sdk.envs import (
    Env,
    FifteenPuzzleEnv,
    Game2048Env,
    GuessTheNumberEnv,
    HangmanEnv,
    MastermindEnv,
    MinesweeperEnv,
    SokobanEnv,
    SudokuEnv,
    TowerofHanoiEnv,
    WordleEnv,
)
from rock_sdk.envs._sokoban_solver import solve
from rock_sdk.envs._words import words_of_length

Step = tuple[str, float, bool, bool, dict[str, Any]]
OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left"}
MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}


def boxed(move: object) -> str:
    """A model-like answer whose last box holds `move`."""
    return f"Let me think. Maybe \\boxed{{wrong}}... no. Final answer: \\boxed{{{move}}}"


def play(env: Env, moves: list[str]) -> Step:
    """Play `moves` in order, stopping early if the episode ends; the last step."""
    step: Step | None = None
    for move in moves:
        step = env.step(boxed(move))
        if step[2] or step[3]:
            break
    assert step is not None
    return step


def pad_until_over(env: Env, moves: Callable[[], Iterator[str]]) -> Step:
    """Keep playing moves from `moves()` until the episode ends."""
    for move in moves():
        step = env.step(boxed(move))
        if step[2] or step[3]:
            return step
    raise AssertionError("the move source ran dry before the episode ended")


def board_tokens(suffix: str) -> list[list[str]]:
    """The cells of a rendered Minesweeper board: the rows after the column header."""
    lines = suffix.splitlines()
    start = lines.index("Here is the current board layout:") + 2
    return [line.split()[1:] for line in lines[start:] if line.split()[:1] != ["Enter"]]


class Player:
    """Base of the scripted players."""

    env_id: ClassVar[str]
    unreadable: ClassVar[str]
    #: Arguments for the env the player wins in (a reachable target where luck matters).
    win_kwargs: ClassVar[dict[str, Any]] = {}

    def illegal(self, env: Any) -> str | None:
        raise NotImplementedError

    def win(self, env: Any) -> Step:
        raise NotImplementedError

    def stall(self, env: Any) -> tuple[Step, float] | None:
        """None when this episode cannot be stalled this way (the test tries another seed)."""
        raise NotImplementedError


class SokobanPlayer(Player):
    env_id = "game:Sokoban-v0-easy"
    unreadable = "north"

    def illegal(self, env: SokobanEnv) -> str | None:
        level = env.level
        for name, (dr, dc) in MOVES.items():
            if level.player + dr * level.width + dc not in level.floor:
                return name
        return None

    def _solution(self, env: SokobanEnv) -> list[str]:
        level = env.level
        moves = solve(level.floor, level.targets, level.boxes, level.player, level.width)
        assert moves is not None
        return moves

    def win(self, env: SokobanEnv) -> Step:
        return play(env, self._solution(env))

    def stall(self, env: SokobanEnv) -> tuple[Step, float] | None:
        # Everything but the winning push leaves all boxes but one on targets; then walk back
        # and forth over cells just left, which never pushes a box.
        moves = self._solution(env)
        if len(moves) < 2:
            return None
        play(env, moves[:-1])
        last = moves[-2]

        def shuffle() -> Iterator[str]:
            while True:
                yield OPPOSITE[last]
                yield last

        step = pad_until_over(env, shuffle)
        boxes = env.config.num_boxes
        return step, (boxes - 1) / boxes


class MinesweeperPlayer(Player):
    env_id = "game:Minesweeper-v0-easy"
    unreadable = "dig here"

    def illegal(self, env: MinesweeperEnv) -> str | None:
        return f"reveal {env.config.rows + 2} 0"

    def win(self, env: MinesweeperEnv) -> Step:
        step = env.step(boxed("reveal 2 2"))
        while not (step[2] or step[3]):
            tokens = board_tokens(step[4]["suffix"])
            row, col = next(
                (r, c)
                for r, line in enumerate(tokens)
                for c, token in enumerate(line)
                if token == "." and (r, c) not in env.mines
            )
            step = env.step(boxed(f"reveal {row} {col}"))
        return step

    def stall(self, env: MinesweeperEnv) -> tuple[Step, float] | None:
        step = env.step(boxed("reveal 2 2"))
        if step[2]:
            return None
        tokens = board_tokens(step[4]["suffix"])
        row, col = next(
            (r, c) for r, line in enumerate(tokens) for c, token in enumerate(line) if token == "."
        )

        def toggle() -> Iterator[str]:
            while True:
                yield f"flag {row} {col}"

        step = pad_until_over(env, toggle)
        revealed = sum(
            token.isdigit() for line in board_tokens(step[4]["suffix"]) for token in line
        )
        safe = env.config.rows * env.config.cols - env.config.num_mines
        return step, revealed / safe


class WordlePlayer(Player):
    env_id = "game:Wordle-v0-easy"
    unreadable = "C-A-T"

    def illegal(self, env: WordleEnv) -> str | None:
        return "ABCDEFG"

    def win(self, env: WordleEnv) -> Step:
        candidates = list(words_of_length(env.config.word_length))
        while True:
            guess = candidates[0]
            step = env.step(boxed(guess))
            if step[2] or step[3]:
                return step
            feedback = step[0].splitlines()[-1].replace(" ", "")
            candidates = [word for word in candidates if _wordle_marks(word, guess) == feedback]

    def stall(self, env: WordleEnv) -> tuple[Step, float]:
        others = [w for w in words_of_length(env.config.word_length) if w != env.secret]
        step = play(env, others[: env.config.max_turns])
        played = others[: env.config.max_turns]
        greens = max(sum(a == b for a, b in zip(word, env.secret, strict=True)) for word in played)
        return step, greens / env.config.word_length


def _wordle_marks(secret: str, guess: str) -> str:
    """Wordle's marks, reckoned independently of the environment's code."""
    marks = []
    pool = [s for s, g in zip(secret, guess, strict=True) if s != g]
    for s, g in zip(secret, guess, strict=True):
        if s == g:
            marks.append("G")
        elif g in pool:
            pool.remove(g)
            marks.append("Y")
        else:
            marks.append("X")
    return "".join(marks)


class MastermindPlayer(Player):
    env_id = "game:Mastermind-v0-easy"
    unreadable = "red green"

    def illegal(self, env: MastermindEnv) -> str | None:
        return " ".join("1" * (env.config.code_length + 1))

    def win(self, env: MastermindEnv) -> Step:
        config = env.config
        candidates = list(permutations(range(1, config.num_numbers + 1), config.code_length))
        while True:
            guess = candidates[0]
            step = env.step(boxed(" ".join(map(str, guess))))
            if step[2] or step[3]:
                return step
            match = re.search(r"(\d+) black peg\(s\) and (\d+) white", step[0])
            assert match is not None
            pegs = (int(match.group(1)), int(match.group(2)))
            candidates = [code for code in candidates if _pegs(code, guess) == pegs]

    def stall(self, env: MastermindEnv) -> tuple[Step, float]:
        config = env.config
        codes = [
            code
            for code in permutations(range(1, config.num_numbers + 1), config.code_length)
            if code != env.code
        ][: config.max_turns]
        step = play(env, [" ".join(map(str, code)) for code in codes])
        black = max(sum(a == b for a, b in zip(code, env.code, strict=True)) for code in codes)
        return step, black / config.code_length


def _pegs(code: tuple[int, ...], guess: tuple[int, ...]) -> tuple[int, int]:
    black = sum(a == b for a, b in zip(code, guess, strict=True))
    common = sum(min(code.count(d), guess.count(d)) for d in set(guess))
    return black, common - black


class GuessTheNumberPlayer(Player):
    env_id = "game:GuessTheNumber-v0-easy"
    unreadable = "seven"

    def illegal(self, env: GuessTheNumberEnv) -> str | None:
        return str(env.config.max_number + 50)

    def win(self, env: GuessTheNumberEnv) -> Step:
        low, high = env.config.min_number, env.config.max_number
        while True:
            guess = (low + high) // 2
            step = env.step(boxed(guess))
            if step[2] or step[3]:
                return step
            if "higher" in step[0]:
                low = guess + 1
            else:
                high = guess - 1

    def stall(self, env: GuessTheNumberEnv) -> tuple[Step, float]:
        config = env.config
        guesses = [n for n in range(config.max_number, 0, -1) if n != env.target]
        guesses = guesses[: config.max_turns]
        step = play(env, [str(g) for g in guesses])
        closest = min(abs(g - env.target) for g in guesses)
        return step, 1 - closest / (config.max_number - config.min_number)


class HangmanPlayer(Player):
    env_id = "game:Hangman-v0-easy"
    unreadable = "E?"

    def illegal(self, env: HangmanEnv) -> str | None:
        return "Q" * (env.config.word_length + 5)

    def win(self, env: HangmanEnv) -> Step:
        return play(env, sorted(set(env.secret)))

    def stall(self, env: HangmanEnv) -> tuple[Step, float]:
        first = env.secret[0]
        absent = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in env.secret]
        step = play(env, [first, *absent])
        return step, env.secret.count(first) / len(env.secret)


class SudokuPlayer(Player):
    env_id = "game:Sudoku-v0-easy"
    unreadable = "row one, column two: 3"

    def illegal(self, env: SudokuEnv) -> str | None:
        for r, row in enumerate(env.board):
            for c, value in enumerate(row):
                if value:
                    return f"{r + 1} {c + 1} {value}"
        return None

    def _empties(self, env: SudokuEnv) -> list[str]:
        return [
            f"{r + 1} {c + 1} {env.solution[r][c]}"
            for r, row in enumerate(env.board)
            for c, value in enumerate(row)
            if not value
        ]

    def win(self, env: SudokuEnv) -> Step:
        return play(env, self._empties(env))

    def stall(self, env: SudokuEnv) -> tuple[Step, float]:
        empties = self._empties(env)
        overwrite = self.illegal(env)
        assert overwrite is not None
        step = play(env, [empties[0]] + [overwrite] * env.config.max_turns)
        return step, 1 / len(empties)


class TowerofHanoiPlayer(Player):
    env_id = "game:TowerofHanoi-v0-easy"
    unreadable = "left to right"

    def illegal(self, env: TowerofHanoiEnv) -> str | None:
        return "B C"

    def win(self, env: TowerofHanoiEnv) -> Step:
        moves: list[str] = []

        def hanoi(n: int, source: str, spare: str, target: str) -> None:
            if n:
                hanoi(n - 1, source, target, spare)
                moves.append(f"{source} {target}")
                hanoi(n - 1, spare, source, target)

        hanoi(env.config.num_disks, "A", "B", "C")
        return play(env, moves)

    def stall(self, env: TowerofHanoiEnv) -> tuple[Step, float]:
        # With three disks: the largest reaches C after four moves; then shuffle disk 1.
        step = play(env, ["A C", "A B", "C B", "A C"] + ["B A", "A B"] * env.config.max_turns)
        settled = 0
        for want, disk in zip([3, 2, 1], env.towers["C"], strict=False):
            if want != disk:
                break
            settled += 1
        return step, settled / 3


class FifteenPuzzlePlayer(Player):
    env_id = "game:FifteenPuzzle-v0-easy"
    unreadable = "slide the 3"

    def illegal(self, env: FifteenPuzzleEnv) -> str | None:
        flat = [tile for row in env.tiles for tile in row]
        row = flat.index(0) // env.config.num_rows
        # No tile sits above a blank on the top row, nor below one on the bottom row.
        return "down" if row == 0 else "up"

    def win(self, env: FifteenPuzzleEnv) -> Step:
        size = env.config.num_rows
        start = tuple(tile for row in env.tiles for tile in row)
        goal = (*range(1, size * size), 0)
        paths: dict[tuple[int, ...], list[str]] = {start: []}
        queue = deque([start])
        while goal not in paths:
            state = queue.popleft()
            for move, after in _slides(state, size):
                if after not in paths:
                    paths[after] = [*paths[state], move]
                    queue.append(after)
        return play(env, paths[goal])

    def stall(self, env: FifteenPuzzleEnv) -> tuple[Step, float]:
        size = env.config.num_rows
        start = tuple(tile for row in env.tiles for tile in row)
        goal = (*range(1, size * size), 0)
        move = next(m for m, after in _slides(start, size) if after != goal)

        def back_and_forth() -> Iterator[str]:
            while True:
                yield move
                yield OPPOSITE[move]

        step = pad_until_over(env, back_and_forth)
        flat = [tile for row in env.tiles for tile in row]
        placed = sum(tile == want for tile, want in zip(flat, goal, strict=True) if want)
        return step, placed / (size * size - 1)


def _slides(state: tuple[int, ...], size: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Each legal slide (named by the way the tile moves) and the state after it."""
    blank = state.index(0)
    row, col = divmod(blank, size)
    for move, (dr, dc) in MOVES.items():
        r, c = row - dr, col - dc
        if 0 <= r < size and 0 <= c < size:
            after = list(state)
            after[blank], after[r * size + c] = after[r * size + c], 0
            yield move, tuple(after)


class Game2048Player(Player):
    env_id = "game:Game2048-v0-easy"
    unreadable = "swipe"
    win_kwargs: ClassVar[dict[str, Any]] = {"target_tile": 16}

    def illegal(self, env: Game2048Env) -> str | None:
        board = env.board
        for move in MOVES:
            if _no_op(board, move):
                return move
        return None

    def win(self, env: Game2048Env) -> Step:
        def corner() -> Iterator[str]:
            while True:
                yield from ("left", "up", "left", "up", "right", "down")

        return pad_until_over(env, corner)

    def stall(self, env: Game2048Env) -> tuple[Step, float]:
        start = max(max(row) for row in env.board)

        def left() -> Iterator[str]:
            while True:
                yield "left"

        step = pad_until_over(env, left)
        top = max(max(row) for row in env.board)
        target = env.config.target_tile
        return step, (math.log2(top) - math.log2(start)) / (math.log2(target) - math.log2(start))


def _no_op(board: list[list[int]], move: str) -> bool:
    """Whether sliding `board` towards `move` changes nothing (reckoned line by line)."""
    lines = board if move in ("left", "right") else [list(c) for c in zip(*board, strict=True)]
    for line in lines:
        cells = line if move in ("left", "up") else line[::-1]
        tiles = [v for v in cells if v]
        if cells[: len(tiles)] != tiles or any(a == b for a, b in pairwise(tiles)):
            return False
    return True


PLAYERS: list[Player] = [
    SokobanPlayer(),
    MinesweeperPlayer(),
    WordlePlayer(),
    MastermindPlayer(),
    GuessTheNumberPlayer(),
    HangmanPlayer(),
    SudokuPlayer(),
    TowerofHanoiPlayer(),
    FifteenPuzzlePlayer(),
    Game2048Player(),
]
