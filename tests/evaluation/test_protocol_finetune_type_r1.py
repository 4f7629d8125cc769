"""A suite's ``protocol.finetune`` given in Python (:class:`medfm.suite_protocols.ProtocolSpec`) must be a mapping,
named as a suite file's is (:func:`medfm.config.from_dict`). Was: ``"full"`` was read as the unknown key ``'f'``,
``None`` stopped with "'NoneType' object is not iterable", a list with "'list' object has no attribute 'get'"."""
import pytest

from medfm.config import ConfigError
from medfm.suite_protocols import ProtocolOptions, ProtocolSpec, check_protocol_section


@pytest.mark.parametrize("value, shown", [("full", "'full' (str)"), (None, "None (NoneType)"),
                                          (["mode"], "['mode']")])
@pytest.mark.parametrize("cls", [ProtocolSpec, ProtocolOptions])
def test_a_finetune_that_is_not_a_mapping_is_named(cls, value, shown):
    with pytest.raises(ConfigError) as info:
        cls(name="finetune", finetune=value)
    assert str(info.value) == f"protocol.finetune must be a mapping, got {shown}"


def test_a_suite_file_names_it_in_the_same_words():
    """Guard: the file's reader said so already (its location first)."""
    with pytest.raises(ConfigError) as info:
        check_protocol_section({"name": "finetune", "finetune": "full"}, "s.yaml", settings=True)
    assert str(info.value) == "s.yaml.protocol.finetune must be a mapping, got 'full' (str)"


def test_a_mapping_is_still_taken():
    """Guard: the settings are kept as given."""
    settings = {"mode": "linear", "train": {"lr": 0.01}}
    assert ProtocolSpec(name="finetune", finetune=settings).finetune == settings
