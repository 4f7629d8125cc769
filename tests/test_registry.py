import pytest

from medfm.registry import ENCODERS, OBJECTIVES, Registry, UnknownNameError, close_match_hint


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


# ---------------------------------------------------------------- build() keyword checks

def test_build_rejects_unknown_keyword_with_close_match():
    from medfm.registry import UnknownArgumentError

    reg = Registry("widget")

    @reg.register("knob")
    def knob(width: int = 1, height: int = 2):
        return width * height

    with pytest.raises(UnknownArgumentError) as e:
        reg.build("knob", widht=3)
    msg = str(e.value)
    assert msg == "widget 'knob' got an unexpected keyword argument 'widht'; did you mean 'width'?"
    # existing callers catch either TypeError (Python's own type for this) or ValueError (medfm CLI)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)
    with pytest.raises(UnknownArgumentError, match=r"'zzz' \(valid: width, height\)"):
        reg.build("knob", zzz=1)
    assert reg.build("knob", width=3, colour=None) == 6  # None values are still dropped first


def test_build_checks_class_builders_and_passes_var_keyword_through():
    from medfm.registry import UnknownArgumentError

    reg = Registry("widget")

    @reg.register("box")
    class Box:
        def __init__(self, size: int, *, lid: bool = False) -> None:
            self.size, self.lid = size, lid

    @reg.register("anything")
    def anything(a: int = 0, **kw):  # e.g. a builder that hands kwargs on to timm
        return a, kw

    assert reg.build("box", size=2, lid=True).lid is True
    with pytest.raises(UnknownArgumentError, match="widget 'box'.*'lidd'; did you mean 'lid'"):
        reg.build("box", size=2, lidd=True)
    assert reg.build("anything", a=1, extra=2) == (1, {"extra": 2})


def test_build_error_for_a_real_objective_names_registry_and_key():
    import medfm

    enc = medfm.create_encoder("resnet_test", in_chans=1, img_size=28)
    with pytest.raises(ValueError, match=r"^objective 'simclr' got an unexpected keyword argument 'hiden_dim'; "
                                         r"did you mean 'hidden_dim'\?$"):
        OBJECTIVES.build("simclr", encoder=enc, hiden_dim=8)


def test_close_match_hint_is_the_one_did_you_mean_rule():
    names = ["pixelate", "pixel_shuffle", "gaussian_noise"]
    assert close_match_hint("pixelat", names) == "; did you mean 'pixelate'?"
    # up to n matches, best first, joined by " or " (sites used ", " or " or " before)
    assert close_match_hint("pixel", names, n=2, cutoff=0.4) == "; did you mean 'pixelate' or 'pixel_shuffle'?"
    # nothing close: the fallback label lists every valid name, or nothing at all
    assert close_match_hint("zzz", names, fallback="known") == " (known: pixelate, pixel_shuffle, gaussian_noise)"
    assert close_match_hint("zzz", names, fallback=None) == ""
    assert close_match_hint("zzz", []) == " (valid: none)"
    # keys that are not strings (a YAML number) are compared as text
    assert close_match_hint(12, ["123", "abc"], cutoff=0.6) == "; did you mean '123'?"


def test_unknown_name_lists_the_names_or_says_where_they_are_listed():
    """The message said ``(known: 2; see list)``: a count and a list nobody could find."""
    small = Registry("text encoder")
    for name in ("minilm", "hf"):
        small.register(name)(lambda: None)
    with pytest.raises(UnknownNameError, match=r"^unknown text encoder 'zzz' \(known: hf, minilm\)$"):
        small.get("zzz")
    with pytest.raises(UnknownNameError, match=r"^unknown encoder 'zzz' \(known: \d+; medfm\.list_encoders\(\) lists them\)$"):
        ENCODERS.get("zzz")
    big = Registry("thing")  # more than 12 names and no lister: all of them
    for i in range(13):
        big.register(f"t{i:02d}")(lambda: None)
    with pytest.raises(UnknownNameError, match=r"\(known: t00, t01, .*, t12\)$"):
        big.get("zzz")
