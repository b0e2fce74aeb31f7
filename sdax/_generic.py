"""The key type parameter that sdax 0.7.2's generic classes carried.

0.7.2 made its tasks, processors, builders, phase runner and analyzer generic
in two types, the context and the key (`AsyncTask[Ctx, str]`), while its own
README writes one (`AsyncDagTaskProcessor[Ctx].builder()`). Both spellings
work here: the key parameter defaults to `Hashable`, for type checkers
(PEP 696, through typing_extensions, which mypy ships) and at run time
(`KeyDefault` fills it in when one type is given). Keys stay `Hashable`
throughout this project; the parameter only informs type checkers.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    K = TypeVar("K", bound=Hashable, default=Hashable)
    K_co = TypeVar("K_co", bound=Hashable, default=Hashable, covariant=True)
else:  # no default before 3.13, and no run-time dependency on typing_extensions
    from typing import TypeVar

    K = TypeVar("K", bound=Hashable)
    K_co = TypeVar("K_co", bound=Hashable, covariant=True)


class KeyDefault:
    """Mixin for a class generic in (context, key): `Cls[Ctx]` means `Cls[Ctx, Hashable]`."""

    __slots__ = ()

    if not TYPE_CHECKING:  # type checkers read the default from the TypeVar

        def __class_getitem__(cls, params: Any) -> Any:
            if not isinstance(params, tuple):
                params = (params,)
            if len(params) == 1:
                params = (*params, Hashable)
            return super().__class_getitem__(params)
