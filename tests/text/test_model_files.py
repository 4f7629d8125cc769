"""Where text models are found (:mod:`medfm.text.model_files`) and the names :mod:`medfm.text.encoders` keeps.

The hub and model-folder code moved out of ``medfm/text/encoders.py`` (over the ~600-line limit);
every import path callers use must still give the same objects, so an ``except TextEncoderError``
written against either module catches what the other raises.
"""
from __future__ import annotations

import pytest

import medfm.text as text
import medfm.text.encoders as encoders
import medfm.text.model_files as model_files


@pytest.mark.parametrize("name", model_files.__all__)
def test_encoders_reexports_the_model_file_names(name):
    assert getattr(encoders, name) is getattr(model_files, name)
    assert name in encoders.__all__


def test_a_missing_model_folder_is_one_text_encoder_error_from_either_module(tmp_path):
    with pytest.raises(text.TextEncoderError, match=r"^no text model directory at "):
        model_files.resolve_text_model(str(tmp_path / "missing" / "model"))
