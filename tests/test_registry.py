import pytest

from medfm.registry import ENCODERS, OBJECTIVES, Registry, UnknownNameError


def test_register_get_and_tags():
    reg = Registry("thing")

    @reg.register("alpha", family="x")
    def alpha(**kw):
        return ("alpha", kw)

    assert reg.get("alpha") is alpha
    assert reg.names(family="x") == ["alpha"]
    assert reg.names(family="y") == []
    assert reg.build("alpha", a=1, b=None) == ("alpha", {"a": 1})  # None overrides dropped
    assert "alpha" in reg and len(reg) == 1


def test_duplicate_registration_raises():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(lambda: 2)


def test_unknown_name_suggests_close_match():
    with pytest.raises(UnknownNameError, match=r"did you mean 'resnet18'"):
        ENCODERS.get("resnet19")
    with pytest.raises(UnknownNameError, match="unknown objective"):
        OBJECTIVES.get("nonsense_objective_name")


def test_registries_populate_lazily():
    assert "simclr" in OBJECTIVES.names()
    assert "resnet18" in ENCODERS.names()
