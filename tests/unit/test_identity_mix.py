"""A fleet of mixed meter kinds: shares hold, every process agrees, bad mixes are refused."""

from __future__ import annotations

from collections import Counter

import pytest

from meter_core.cosem.build import model_of
from meter_core.device.identity import FleetConfig, MeterKind, kind_of, meter_identity, parse_mix
from meter_core.device.meter import Meter

MIX = ((MeterKind.SINGLE_PHASE, 0.7), (MeterKind.THREE_PHASE, 0.25), (MeterKind.CT_PT, 0.05))


def test_shares_hold_and_kinds_are_stable():
    fleet = FleetConfig(seed=3, mix=MIX)
    counts = Counter(kind_of(fleet, i) for i in range(20_000))
    for kind, share in MIX:
        assert abs(counts[kind] / 20_000 - share) < 0.015
    assert [kind_of(fleet, i) for i in range(100)] == [kind_of(FleetConfig(seed=3, mix=MIX), i) for i in range(100)]
    assert [kind_of(fleet, i) for i in range(100)] != [kind_of(FleetConfig(seed=4, mix=MIX), i) for i in range(100)]


def test_a_meter_of_the_mix_has_its_kind_s_object_model():
    fleet = FleetConfig(seed=3, mix=MIX)
    ctpt = next(i for i in range(1000) if kind_of(fleet, i) is MeterKind.CT_PT)
    m = Meter(fleet, ctpt, epoch_start=1767205800.0)
    assert m.identity.kind is MeterKind.CT_PT and model_of(m).kind is MeterKind.CT_PT
    assert meter_identity(fleet, ctpt).kind is MeterKind.CT_PT
    assert not any(o.ln == bytes((0, 0, 96, 3, 10, 255)) for o in model_of(m).objects)  # no relay on CT/PT


@pytest.mark.parametrize("text, words", [
    ("1ph=0.7,3ph=0.2", "add up"),
    ("1ph=0.7,4ph=0.3", "unknown meter kind"),
    ("1ph", "KIND=SHARE"),
    ("1ph=-0.5,3ph=1.5", "KIND=SHARE"),
    ("1ph=0.5,1ph=0.5", "twice"),
])
def test_bad_mixes(text, words):
    with pytest.raises(ValueError, match=words):
        parse_mix(text)


def test_parse_mix():
    assert parse_mix("1ph=0.7, 3ph=0.25,ctpt=0.05") == MIX
