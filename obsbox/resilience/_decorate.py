"""Turning an object with `call` and `call_async` into a decorator for functions and coroutine functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

P = ParamSpec("P")
T = TypeVar("T")


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


class Decorator:
    """For a class with `call` and `call_async`: its instances decorate functions and coroutine functions.

    >>> @CircuitBreaker("inventory")          # doctest: +SKIP
    ... async def reserve(sku: str) -> None: ...
    """

    call: Callable[..., Any]
    call_async: Callable[..., Awaitable[Any]]

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Use as a decorator on a function (through `call`) or a coroutine function (through `call_async`)."""
        return decorate(fn, self.call, self.call_async)
