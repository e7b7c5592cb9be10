"""Turning an object with `call` and `call_async` into a decorator for functions and coroutine functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


def decorate(
    fn: Callable[..., Any],
    call: Callable[..., Any],
    call_async: Callable[..., Awaitable[Any]],
) -> Callable[..., Any]:
    """`fn` wrapped to go through `call` (or, for a coroutine function, `call_async`), keeping its name and docs."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await call_async(fn, *args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(fn, *args, **kwargs)

    return wrapper
