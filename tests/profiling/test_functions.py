"""Function names for tracemalloc's (file, line) frames, from the code objects alive in the process."""

from __future__ import annotations

from collections.abc import Callable

from obsbox.profiling._functions import FunctionNames


class Outer:
    def method(self) -> Callable[[], int]:
        def inner() -> int:
            return 1

        return inner


def lines_of(function: Callable[..., object]) -> list[int]:
    return [line for _, _, line in function.__code__.co_lines() if line is not None]


def test_the_innermost_live_function_names_the_line() -> None:
    inner = Outer().method()
    names = FunctionNames({__file__})
    assert names.name(__file__, max(lines_of(inner))) == "Outer.method.<locals>.inner"
    assert names.name(__file__, max(lines_of(Outer.method))) == "Outer.method"  # `return inner`
    assert names.name(__file__, max(lines_of(test_the_innermost_live_function_names_the_line))) == \
        "test_the_innermost_live_function_names_the_line"


def test_lines_outside_functions_and_unknown_files() -> None:
    names = FunctionNames({__file__})
    assert names.name(__file__, 1) == "<module>"  # the module docstring
    assert names.name("/nowhere/gone.py", 3) == "<module>"
