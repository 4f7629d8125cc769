"""A protocol option written inside a suite's ``protocol.finetune`` is told it is one
(:func:`medfm.suite_protocols.check_finetune_keys`). Was: ``seed`` was told "it is a train setting", which seeds the fit
alone, while ``protocol.seed`` (the documented place) seeds the label draw and the fit; ``label_fractions`` got the
list of valid keys."""
import pytest

from medfm.config import ConfigError
from medfm.suite_protocols import check_finetune_keys, check_finetune_settings


@pytest.mark.parametrize("key, message", [
    ("seed", "protocol.finetune: unknown key 'seed'; it is a protocol option (the seed of the label draw and the "
             "fit): write protocol: {seed: ...}; train: {seed: ...} sets the fit's alone"),
    ("label_fractions", "protocol.finetune: unknown key 'label_fractions'; it is a protocol option (the share of "
                        "training labels fitted on): write protocol: {label_fractions: ...}"),
])
def test_a_protocol_option_inside_finetune_is_named_as_one(key, message):
    with pytest.raises(ConfigError) as err:
        check_finetune_keys({"mode": "full", key: 1})
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:  # the suite reader's and the early check's rule
        check_finetune_settings({key: 1})
    assert str(err.value) == message


def test_an_option_of_another_protocol_and_a_train_setting_keep_their_hints():
    """A guard: ``linear_c`` is no option of the finetune protocol (no "write protocol" advice that would be refused
    next), and ``lr`` is still told it is a train setting."""
    for key, message in (("linear_c", "protocol.finetune: unknown key 'linear_c' (valid keys: mode, lora, dropout, "
                                      "head_norm, augment, train)"),
                         ("lr", "protocol.finetune: unknown key 'lr'; it is a train setting: write train: {lr: ...}")):
        with pytest.raises(ConfigError) as err:
            check_finetune_keys({key: 1})
        assert str(err.value) == message
