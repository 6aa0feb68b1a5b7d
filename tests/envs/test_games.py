"""Rules of the individual games, beyond the shared conventions."""

from __future__ import annotations

import pytest

from rock_core._errors import BadRequest
from rock_sdk.envs import (
    FifteenPuzzleEnv,
    Game2048Env,
    GuessTheNumberEnv,
    HangmanEnv,
    MastermindEnv,
    MinesweeperEnv,
    SudokuEnv,
    TowerofHanoiEnv,
    WordleEnv,
    make,
)
from rock_sdk.envs._game2048 import slide_row
from rock_sdk.envs._mastermind import score_guess
from rock_sdk.envs._sudoku import count_solutions
from rock_sdk.envs._wordle import wordle_feedback
from rock_sdk.envs._words import WORD_LENGTHS, words_of_length

from .players import boxed


@pytest.mark.parametrize(
    ("secret", "guess", "marks"),
    [
        ("CRANE", "CRANE", "GGGGG"),
        ("CRANE", "NACRE", "YYYYG"),
        ("ABBEY", "BABES", "YYGGX"),  # each B of the guess matches one B of the secret
        ("ROBOT", "FLOOR", "XXYGY"),
        ("SPEED", "EERIE", "YYXXX"),  # the secret has two E's, both away from these spots
    ],
)
def test_wordle_feedback_counts_repeated_letters(secret: str, guess: str, marks: str) -> None:
    assert wordle_feedback(secret, guess) == marks


def test_wordle_refuses_repeats_and_optionally_unknown_words() -> None:
    env = WordleEnv(word_length=5, only_real_words=True, max_turns=6)
    env.reset(seed=0)
    other = next(w for w in words_of_length(5) if w != env.secret)
    assert env.step(boxed(other.lower()))[4]["outcome"] == "played"
    _, reward, _, _, info = env.step(boxed(other))
    assert (reward, info["outcome"]) == (0.0, "illegal")
    observation, _, _, _, info = env.step(boxed("QZXJV"))
    assert info["outcome"] == "illegal" and "not in the word list" in observation
    # Spaces between letters are ignored, as GEM does.
    spaced = " ".join(env.secret)
    assert env.step(boxed(spaced))[1:4] == (1.0, True, False)


def test_word_list_ships_every_length_used() -> None:
    for length in WORD_LENGTHS:
        words = words_of_length(length)
        assert len(words) >= 300
        assert all(len(w) == length and w.isalpha() and w.isupper() for w in words)
        assert len(set(words)) == len(words)
    with pytest.raises(BadRequest, match="no words of length 9 ship with the package"):
        words_of_length(9)


def test_hangman_word_guess_wins_and_wrong_word_continues() -> None:
    env = HangmanEnv(word_length=5, max_turns=5)
    env.reset(seed=3)
    wrong = next(w for w in words_of_length(5) if w != env.secret)
    step = env.step(boxed(wrong))
    assert (step[1], step[2], step[4]["outcome"]) == (0.0, False, "played")
    assert env.step(boxed(env.secret.lower()))[1:4] == (1.0, True, False)


def test_hangman_repeated_letter_is_illegal() -> None:
    env = HangmanEnv(word_length=4, max_turns=5)
    env.reset(seed=1)
    env.step(boxed("E"))
    assert env.step(boxed("e"))[4]["outcome"] == "illegal"


@pytest.mark.parametrize(
    ("code", "guess", "pegs"),
    [
        ((1, 2, 3, 4), (1, 2, 3, 4), (4, 0)),
        ((1, 2, 3, 4), (4, 3, 2, 1), (0, 4)),
        ((1, 1, 2, 2), (1, 2, 1, 3), (1, 2)),
        ((5, 6, 7, 8), (1, 2, 3, 4), (0, 0)),
    ],
)
def test_mastermind_pegs(
    code: tuple[int, ...], guess: tuple[int, ...], pegs: tuple[int, int]
) -> None:
    assert score_guess(code, guess) == pegs


def test_mastermind_refuses_out_of_range_digits_and_repeats() -> None:
    env = MastermindEnv(code_length=2, num_numbers=4, max_turns=5)
    env.reset(seed=0)
    observation, _, _, _, info = env.step(boxed("1 9"))
    assert info["outcome"] == "illegal" and "outside 1..4" in observation
    guess = "1 2" if env.code != (1, 2) else "2 1"
    env.step(boxed(guess))
    observation, _, _, _, info = env.step(boxed(guess.replace(" ", ", ")))
    assert info["outcome"] == "illegal" and "already tried" in observation


def test_mastermind_with_duplicates_draws_repeated_digits() -> None:
    env = MastermindEnv(code_length=4, num_numbers=2, duplicate_numbers=True)
    codes = set()
    for seed in range(10):
        env.reset(seed=seed)
        codes.add(env.code)
    assert any(len(set(code)) < 4 for code in codes)
    with pytest.raises(BadRequest, match="2 digits cannot fill a code of 4 without duplicates"):
        MastermindEnv(code_length=4, num_numbers=2)


def test_guess_the_number_hints_point_the_way() -> None:
    env = GuessTheNumberEnv(min_number=1, max_number=100, max_turns=10)
    env.reset(seed=5)
    low = env.step(boxed(env.target - 1 if env.target > 1 else env.target + 1))[0]
    assert ("higher" in low) == (env.target > 1)
    assert env.step(boxed("+" + str(env.target)))[1] == 1.0


def test_minesweeper_first_reveal_is_safe_and_floods_zeros() -> None:
    for seed in range(20):
        env = MinesweeperEnv(rows=8, cols=8, num_mines=12, max_turns=64)
        env.reset(seed=seed)
        _, _, terminated, _, info = env.step(boxed("reveal 0 0"))
        assert not terminated
        assert len(env.mines) == 12
        assert all(max(abs(r), abs(c)) > 1 for r, c in env.mines)
        # (0, 0) has no mine around it, so its neighbours were opened as well.
        assert info["suffix"].splitlines()[2].split()[1:3] != [".", "."]


def test_minesweeper_hitting_a_mine_loses_and_flags_toggle() -> None:
    env = MinesweeperEnv(rows=5, cols=5, num_mines=5, max_turns=25)
    env.reset(seed=2)
    env.step(boxed("reveal 2 2"))
    row, col = sorted(env.mines)[0]
    assert env.step(boxed(f"flag {row} {col}"))[4]["outcome"] == "played"
    assert env.step(boxed(f"reveal {row} {col}"))[4]["outcome"] == "illegal"  # flagged
    env.step(boxed(f"FLAG {row} {col}"))  # verbs are case-insensitive
    observation, reward, terminated, truncated, info = env.step(boxed(f"reveal {row} {col}"))
    assert (reward, terminated, truncated, info["outcome"]) == (0.0, True, False, "lost")
    assert "hit a mine" in observation
    with pytest.raises(BadRequest, match="no episode in progress"):
        env.step(boxed("reveal 0 0"))


def test_minesweeper_unknown_verb_is_illegal() -> None:
    env = MinesweeperEnv()
    env.reset(seed=0)
    observation, reward, _, _, info = env.step(boxed("dig 1 1"))
    assert (reward, info["outcome"]) == (0.0, "illegal")
    assert "'dig' is not a command" in observation


@pytest.mark.parametrize("variant", ["easy", "hard"])
def test_sudoku_puzzles_have_one_solution_matching_the_board(variant: str) -> None:
    env = make(f"game:Sudoku-v0-{variant}")
    assert isinstance(env, SudokuEnv)
    for seed in range(5):
        env.reset(seed=seed)
        box = 2 if env.config.scale == 4 else 3
        cells = [value for row in env.board for value in row]
        assert count_solutions(cells, box) == 1
        assert cells.count(0) <= env.config.scale**2 - env.config.clues
        solution = [value for row in env.solution for value in row]
        assert all(c in (0, s) for c, s in zip(cells, solution, strict=True))
        for line in env.solution:
            assert sorted(line) == list(range(1, env.config.scale + 1))


def test_sudoku_counts_several_solutions_of_an_empty_grid() -> None:
    assert count_solutions([0] * 16, 2, limit=5) == 5
    # R1 C4 can only be 4, but column 4 already holds a 4.
    assert count_solutions([1, 2, 3, 0, 0, 0, 0, 4] + [0] * 8, 2) == 0


def test_sudoku_rejects_a_wrong_number() -> None:
    env = SudokuEnv(scale=4, clues=10, max_turns=15)
    env.reset(seed=0)
    row, col = next(
        (r, c) for r, line in enumerate(env.board) for c, value in enumerate(line) if not value
    )
    wrong = env.solution[row][col] % 4 + 1
    observation, reward, _, _, info = env.step(boxed(f"{row + 1} {col + 1} {wrong}"))
    assert (reward, info["outcome"]) == (0.0, "illegal") and "not correct" in observation


@pytest.mark.parametrize("move", ["A C", "a,c", "A->C", "a to c"])
def test_hanoi_accepts_several_spellings(move: str) -> None:
    env = TowerofHanoiEnv(num_disks=3)
    env.reset(seed=0)
    env.step(boxed(move))
    assert env.towers == {"A": [3, 2], "B": [], "C": [1]}


def test_hanoi_refuses_a_larger_disk_on_a_smaller_one() -> None:
    env = TowerofHanoiEnv(num_disks=3)
    env.reset(seed=0)
    env.step(boxed("A C"))
    observation, _, _, _, info = env.step(boxed("A C"))
    assert info["outcome"] == "illegal" and "on the smaller disk 1" in observation
    assert env.step(boxed("C C"))[4]["outcome"] == "illegal"


def test_fifteen_puzzle_starts_scrambled_and_solvable() -> None:
    env = FifteenPuzzleEnv(num_rows=4, max_turns=50)
    for seed in range(10):
        env.reset(seed=seed)
        flat = [tile for row in env.tiles for tile in row]
        assert sorted(flat) == list(range(16))
        assert flat != [*range(1, 16), 0]
        # Solvable 4x4 boards: inversions + blank's row from the bottom is odd.
        tiles = [t for t in flat if t]
        inversions = sum(a > b for i, a in enumerate(tiles) for b in tiles[i + 1 :])
        assert (inversions + 4 - flat.index(0) // 4) % 2 == 1


def test_fifteen_puzzle_moves_slide_tiles_into_the_blank() -> None:
    env = FifteenPuzzleEnv(num_rows=3)
    env.reset(seed=0)
    before = [tile for row in env.tiles for tile in row]
    blank = before.index(0)
    move = "up" if blank < 6 else "down"
    env.step(boxed(move))
    after = [tile for row in env.tiles for tile in row]
    source = blank + 3 if move == "up" else blank - 3
    assert after[blank] == before[source] and after[source] == 0


@pytest.mark.parametrize(
    ("row", "slid"),
    [
        ([2, 2, 2, 2], [4, 4, 0, 0]),
        ([2, 0, 2, 4], [4, 4, 0, 0]),
        ([4, 4, 8, 0], [8, 8, 0, 0]),
        ([2, 4, 8, 16], [2, 4, 8, 16]),
        ([0, 0, 0, 2], [2, 0, 0, 0]),
    ],
)
def test_2048_rows_merge_each_pair_once(row: list[int], slid: list[int]) -> None:
    assert slide_row(row) == slid


def test_2048_moves_spawn_a_tile_and_track_progress() -> None:
    env = Game2048Env(target_tile=2048, max_turns=10)
    env.reset(seed=1)
    tiles_before = sum(v > 0 for row in env.board for v in row)
    for move in ("left", "up", "right", "down"):
        step = env.step(boxed(move))
        if step[4]["outcome"] == "played":
            break
    tiles_after = sum(v > 0 for row in env.board for v in row)
    assert tiles_after in (tiles_before, tiles_before + 1)  # a merge may offset the spawn
    assert 0 <= env.partial_credit < 1


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (
            GuessTheNumberEnv,
            {"min_number": 5, "max_number": 5},
            r"min_number \(5\) must be below max_number \(5\)",
        ),
        (MinesweeperEnv, {"rows": 3, "cols": 3, "num_mines": 1}, "between 1 and 0"),
        (WordleEnv, {"word_length": 9}, "word_length must be between 3 and 7, got 9"),
        (HangmanEnv, {"max_turns": 0}, "Hangman: max_turns must be at least 1, got 0"),
        (SudokuEnv, {"scale": 6}, "Sudoku: scale must be 4 or 9, got 6"),
        (Game2048Env, {"target_tile": 100}, "power of two of at least 8, got 100"),
        (TowerofHanoiEnv, {"num_disks": 0}, "num_disks must be at least 1, got 0"),
        (FifteenPuzzleEnv, {"num_rows": 1}, "num_rows must be at least 2, got 1"),
    ],
)
def test_bad_parameters_are_refused(cls: type, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        cls(**kwargs)


def test_render_ansi_shows_the_state() -> None:
    env = make("game:TowerofHanoi-v0-easy", render_mode="ansi")
    assert env.render() is None  # nothing to draw before the first reset
    env.reset(seed=0)
    assert (
        env.render()
        == "Here is the current state of the tower of hanoi:\nA: [3, 2, 1]\nB: []\nC: []"
    )
    assert make("game:TowerofHanoi-v0-easy").render() is None
    with pytest.raises(BadRequest, match="render_mode 'human' is not supported"):
        make("game:TowerofHanoi-v0-easy", render_mode="human")
