"""``app.domain.values.quick_init``: the cheaper ``__init__`` of the recompute's frozen values
behaves as the one ``dataclasses`` writes (docs/benchmarks.md, "Health recompute")."""

from __future__ import annotations

import inspect
from dataclasses import FrozenInstanceError, dataclass, field

import pytest

from app.domain.reasons import Reason
from app.domain.tier import TierOverride
from app.domain.values import quick_init


@dataclass(frozen=True)
class Plain:
    a: int
    b: dict[str, int] = field(default_factory=dict)
    c: tuple[str, ...] = ()


@quick_init
@dataclass(frozen=True)
class Quick:
    a: int
    b: dict[str, int] = field(default_factory=dict)
    c: tuple[str, ...] = ()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((1, {"x": 2}), {}), ((1,), {"c": ("y",)}), ((), {"a": 3, "b": {}, "c": ()})],
)
def test_same_fields_defaults_and_factories_as_dataclasses(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    quick, plain = Quick(*args, **kwargs), Plain(*args, **kwargs)  # type: ignore[arg-type]
    assert vars(quick) == vars(plain)
    assert repr(quick) == repr(plain).replace("Plain", "Quick")


def test_each_default_factory_call_gives_a_new_value() -> None:
    assert Quick(1).b is not Quick(1).b


def test_still_frozen_compared_and_hashed() -> None:
    q = Quick(1, c=("a",))
    with pytest.raises(FrozenInstanceError):
        q.a = 2  # type: ignore[misc]
    assert q == Quick(1, c=("a",))
    assert q != Quick(2)
    assert hash(Reason("dormant", "x")) == hash(Reason("dormant", "x"))


def test_same_signature_and_errors_as_dataclasses() -> None:
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, 2, 3, 4)  # type: ignore[call-arg]


def test_post_init_still_runs() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        TierOverride("key", " ", set_on=None)  # type: ignore[arg-type]


def test_only_over_a_frozen_dataclass() -> None:
    with pytest.raises(TypeError):

        @quick_init
        @dataclass
        class NotFrozen:
            a: int
