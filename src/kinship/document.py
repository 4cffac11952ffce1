"""Result documents: one generic JSON serialiser for frozen result dataclasses, and ``Meta``.

A result (``MatchResult`` and what it holds) is a tree of frozen stdlib dataclasses, enums,
tuples and plain values. Its JSON is derived from the types, never written by hand::

    doc = to_jsonable(result)                         # dict/list/str/float/int/bool/None
    same = from_jsonable(MatchResult, json.loads(json.dumps(doc)))
    assert same == result

Keys are the dataclass fields, in field order; enums become their values, tuples lists, and
``datetime`` ISO 8601 text. Reading back validates every field against its annotation (pydantic
v2 ``TypeAdapter``, the way capa's ``ResultDocument`` is read back) and raises
:class:`kinship.exceptions.InputError` on a document that does not fit.

A result class inherits :class:`Document` for ``to_dict``/``from_dict``/``from_json`` through
this serialiser. What a document's JSON adds to its fields is declared on the class, never a
hand-written method: a key computed from the fields is a pydantic ``computed_field`` (listed
after the fields), a rounded value a ``field_serializer``, a JSON key that is a Python keyword a
field alias (``Annotated[str, pydantic.Field(alias="from")]``).

Every top-level document carries a :class:`Meta` block: what made it (kinship version, the feature
parameters sketches were made with), against what (store id and generation) and when.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

import pydantic

from kinship.exceptions import InputError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Meta:
    """How and when a result was made, so that a saved document can be judged on its own."""

    kinship_version: str  # the installed package's version ("unknown" when not installed)
    # pipeline.feature_params(): what shaped the sketches; results of two sets do not compare
    feature_params: dict[str, Any] = field(default_factory=dict)
    store_id: str = ""  # Store.store_id() of the store matched against ("" for none)
    store_generation: int = 0  # Store.generation() when the index was built
    query_time: datetime | None = None  # when the query started, UTC
    seconds: float = 0.0  # wall time of the query (analysis + matching)


def kinship_version() -> str:
    """The installed kinship's version, or "unknown" (a source tree that is not installed)."""
    try:
        return importlib.metadata.version("kinship")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def utc_now() -> datetime:
    """Now, in UTC, to the microsecond (``Meta.query_time``)."""
    return datetime.now(UTC)


# What a builder calls, with its wall time, to get the meta block of the document it is
# about to construct (the API makes one per query: version, feature parameters, store).
MetaFn = Callable[[float], Meta]


# One pydantic adapter per result type: building one costs milliseconds.
_ADAPTERS: dict[type[Any], pydantic.TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> pydantic.TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return adapter


def to_jsonable(obj: Any) -> dict[str, Any]:
    """``obj`` (a result dataclass) as JSON-ready plain data: keys in field order (aliases
    where a field declares one), then computed keys."""
    out: dict[str, Any] = _adapter(type(obj)).dump_python(obj, mode="json", by_alias=True)
    return out


def from_jsonable(cls: type[T], data: Any, source: str = "document") -> T:
    """The ``cls`` that :func:`to_jsonable` turned into ``data`` (equal to the original).

    Raises :class:`InputError` naming ``source`` (a file name, say) when ``data`` does not
    fit ``cls``."""
    try:
        out: T = _adapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        raise InputError(source, f"not a valid {cls.__name__} document: {e}") from e
    return out


class Document:
    """Mixin of a result dataclass: its JSON edge through :func:`to_jsonable` and
    :func:`from_jsonable`, so that ``cls.from_dict(json.loads(json.dumps(x.to_dict()))) == x``
    (up to values the JSON rounds, such as ``seconds``)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: the fields in order, then computed keys."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "document") -> Self:
        """The document :meth:`to_dict` gave ``data`` for (computed keys are ignored);
        :class:`InputError` naming ``source`` when it is not one."""
        return from_jsonable(cls, data, source)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "document") -> Self:
        """The document a JSON text holds (``source`` names it in errors)."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InputError(source, f"not JSON: {e}") from e
        return cls.from_dict(data, source)
