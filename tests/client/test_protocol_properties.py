"""Properties of the wire protocol's one decoder, over generated frames (Hypothesis).

`decode` reads whatever a socket delivers, so for any text it returns a message or raises
`ProtocolError` (its subclass `UnknownMessageType` for a type it does not know): never another
exception, which would end a receive loop. And every message it can build survives a round
trip through `encode`.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from layercode_client import protocol as p
from layercode_client.errors import ProtocolError

BOUNDED = settings(max_examples=300, deadline=None)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
type_names = st.sampled_from(sorted(p.MESSAGES)) | st.text(max_size=30)


@st.composite
def message_like(draw) -> dict:
    """A JSON object with a known (or random) type and some of its fields, right or wrong."""
    type_name = draw(type_names)
    cls = p.MESSAGES.get(type_name)
    names = [spec[0] for spec in cls.fields] if cls else []
    names += draw(st.lists(st.text(max_size=8), max_size=2))
    fields = draw(st.dictionaries(st.sampled_from(names), json_values)) if names else {}
    return {"type": type_name, **fields}


@st.composite
def deeply_nested(draw) -> str:
    depth = draw(st.integers(min_value=1, max_value=200_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    inside = draw(st.sampled_from(["1", '"x"', ""]))
    return opener * depth + inside + closer * draw(st.integers(0, depth))


frames = (
    st.text()
    | json_values.map(lambda value: json.dumps(value))
    | message_like().map(lambda value: json.dumps(value))
    | message_like().map(lambda value: json.dumps(value)[: len(json.dumps(value)) // 2])
    | deeply_nested()
)


@BOUNDED
@given(frames, st.sampled_from([None, p.CLIENT_MESSAGES, p.SERVER_MESSAGES]))
def test_any_frame_decodes_to_a_message_or_a_protocol_error(frame, allowed):
    try:
        message = p.decode(frame, allowed=allowed)
    except ProtocolError:
        return
    assert isinstance(message, p.Message)
    assert allowed is None or message.type in allowed


def valid_value(kind):
    """Values a field of `kind` accepts (finite numbers: NaN is never equal to itself)."""
    finite = st.floats(allow_nan=False, allow_infinity=False)
    choices = {
        p.STR: st.text(max_size=30),
        p.INT: st.integers(),
        p.BOOL: st.booleans(),
        p.ID: st.text(max_size=12) | st.integers(),
        p.DICT: st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8) | finite),
        p.LIST: st.lists(st.integers() | st.text(max_size=8), max_size=4),
    }
    if kind is p.ANY:
        return st.booleans() | st.integers() | finite | st.text(max_size=20)  # null: unset
    return choices[kind]


@st.composite
def messages(draw) -> p.Message:
    cls = p.MESSAGES[draw(st.sampled_from(sorted(p.MESSAGES)))]
    values = {}
    for spec in cls.fields:
        optional = len(spec) > 2
        if optional and draw(st.booleans()):
            continue  # left at its default
        values[spec[0]] = draw(valid_value(spec[1]))
    return cls(**values)


@BOUNDED
@given(messages())
def test_every_message_survives_an_encode_decode_round_trip(message):
    assert p.decode(message.encode()) == message
