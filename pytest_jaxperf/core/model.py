"""What a model under test is: a ``flax.nnx.Module`` (called as ``model(*inputs)``) or a pure function,
called as ``fn(*inputs)`` or, with ``params``, as ``fn(params, *inputs)``; why anything else cannot be
run; and an NNX module's bound method (``vae.decode``, an ``@nnx.jit`` method alike) as a module of its own.

flax is never imported here where nothing has imported it: a model that is a plain function needs none.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def describe_model_error(model: Any, params: Any) -> str | None:
    """Why ``model`` cannot be run by jaxperf, or None when it can."""
    accepted = (
        "jaxperf accepts a flax.nnx.Module (called as model(*inputs)) or a function (called as "
        "fn(*inputs), or fn(params, *inputs) with params=)"
    )
    if isinstance(model, type):
        return f"got the class {model.__qualname__}, not an instance: pass {model.__name__}(...); {accepted}"
    linen = sys.modules.get("flax.linen")
    if linen is not None and isinstance(model, linen.Module):
        return (
            f"got a flax.linen module {type(model).__name__}: pass its apply function with the "
            f"variables, jaxperf.check(model.apply, *inputs, params=variables); {accepted}"
        )
    if is_nnx_module(model):
        if params is not None:
            return (
                f"params= was given with the flax.nnx.Module {type(model).__name__}, which holds its "
                "own parameters: drop params=, or pass a pure function"
            )
        return None
    if not callable(model):
        text = repr(model)
        text = text if len(text) <= 60 else text[:57] + "..."
        return f"got {type(model).__name__} {text}, which is not callable; {accepted}"
    return None


def is_nnx_module(model: Any) -> bool:
    """Whether ``model`` is a ``flax.nnx.Module`` (without importing flax when nothing has)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(model, nnx.Module)


def as_module(model: Any) -> Any:
    """A bound method of an NNX module (``vae.decode``, an ``@nnx.jit`` method alike) as a module whose
    call is that method, named ``VAE.decode``; the module's own ``__call__`` as the module; anything else
    as it is.

    A bound method jitted as a function would carry the module's weights as constants of its program,
    out of reach of every precision variant; as a module they are its state, cast and quantized like
    any module's (their paths start with the owner's class name: ``VAE.decoder.kernel``).
    """
    owner, function = _module_method(model)
    if owner is None:
        return model
    if function.__name__ == "__call__":
        return owner
    return _method_type(type(owner).__name__, function)(owner)


def same_model(known: Any, model: Any) -> bool:
    """Whether ``model`` is ``known`` again: the same object, or the same method of the same module
    (``vae.decode`` is a new bound method at each access)."""
    if known is model:
        return True
    owner, function = _module_method(model)
    return owner is not None and _module_method(known) == (owner, function)


def _module_method(model: Any) -> tuple[Any, Any]:
    """The module and the plain function of a module's bound method; (None, None) for anything else."""
    if inspect.ismethod(model) and is_nnx_module(model.__self__):
        return model.__self__, model.__func__
    # flax binds an @nnx.jit method as partial(JitWrapped, module). The plugin compiles the module itself,
    # so the function beneath is what it calls: an nnx.jit inside the plugin's jit would write the
    # module's state back across trace levels, which flax refuses. Only nnx.jit's wrapper is opened: a
    # vmap, a checkpoint or a decorator of the user's is part of the model.
    if not isinstance(model, functools.partial) or not _is_nnx_jit(model.func):
        return None, None
    beneath = getattr(model.func, "__wrapped__", None)
    if callable(beneath) and len(model.args) == 1 and not model.keywords and is_nnx_module(model.args[0]):
        return model.args[0], beneath
    return None, None


def _is_nnx_jit(function: Any) -> bool:
    kind = type(function)
    return kind.__name__ == "JitWrapped" and kind.__module__.startswith("flax.nnx")


@functools.cache
def _method_type(owner_name: str, function: Callable[..., Any]) -> type:
    from flax import nnx

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return function(getattr(self, owner_name), *args, **kwargs)

    def init(self: Any, owner: Any) -> None:
        setattr(self, owner_name, owner)

    # One class per owner and method, named as the call reads: records and compile events say VAE.decode.
    name = f"{owner_name}.{function.__name__}"
    return type(name, (nnx.Module,), {"__init__": init, "__call__": call})
