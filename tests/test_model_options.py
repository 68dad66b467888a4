"""refcolor.models.model_options: the weightless options that bundling and forking may set."""

from __future__ import annotations

import pytest

from refcolor.models.model_options import parse_model_override


def test_typed_values_per_model_kind():
    assert parse_model_override("match_hint_means=TRUE", "guide") == ("match_hint_means", True)
    assert parse_model_override("full_hint_probability=0.5", "exemplar") == ("full_hint_probability", 0.5)
    assert parse_model_override("inference_hints=full", "exemplar") == ("inference_hints", "full")
    assert parse_model_override("correspondence_stride=2", "exemplar") == ("correspondence_stride", 2)


@pytest.mark.parametrize(
    "text,kind,match",
    [
        ("match_hint_means=maybe", "guide", "match_hint_means expects true or false, got 'maybe'"),
        ("unet_widths=8", "exemplar", "KEY one of \\['correspondence_stride', 'correspondence_temperature'"),
        ("full_hint_probability", "exemplar", "expected KEY=VALUE"),
        ("full_hint_probability=half", "exemplar", "full_hint_probability expects a float, got 'half'"),
        ("match_hint_means=true", "scft", "KEY one of \\[\\] for a 'scft' model"),
    ],
)
def test_refusals_are_one_line(text, kind, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_model_override(text, kind)
    assert "\n" not in str(err.value)
