"""Security setup (class 64): policy, suite, system titles, certificates, key transfer and agreement."""

from __future__ import annotations

from meter_core.codec.apdu.codes import ActionResult
from meter_core.codec.axdr import Data, DataType, encode_octets, encode_value
from meter_core.codec.obis import ln
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute, static
from meter_core.device import keys as keymod

SECURITY_SETUP = InterfaceClass(
    64, 1, "Security setup",
    ("logical_name", "security_policy", "security_suite", "client_system_title", "server_system_title",
     "certificates"),
    ("security_activate", "key_transfer", "key_agreement", "generate_key_pair", "generate_certificate_request",
     "import_certificate", "export_certificate", "remove_certificate"),
)


def security_setup(obis: str, e: int, policy: int, suite: int) -> CosemObject:
    """Security setup v1 0.0.43.0.e.255: policy, suite, system titles; key transfer under the master key."""
    o = ln(obis)

    def client_title(m, a, now):
        keys = m.state.security
        ks = keys.sets.get(e) if keys is not None else None
        return encode_octets(ks.client_system_title if ks is not None else b"")

    return CosemObject(
        SECURITY_SETUP, o, f"Security setup {obis}",
        (
            ln_attribute(o),
            static(policy, DataType.ENUM),  # security_policy (v1 bits)
            static(suite, DataType.ENUM),  # security_suite
            Attribute(client_title),
            Attribute(lambda m, a, now: encode_octets(m.identity.system_title)),
            Attribute(_certificates(suite) if e >= 3 and suite else encode_value(Data(DataType.ARRAY, ()))),
        ),
        (None,) * 8 if e < 3 else (
            _security_activate(e), _key_transfer(e), _key_agreement(e, suite), *(_pki_method(name, suite) for name in (
                "generate_key_pair", "generate_certificate_request", "import_certificate", "export_certificate",
                "remove_certificate")),
        ),
    )


def _key_agreement(e: int, suite: int):
    """key_agreement (method 3): suites 1 and 2 only."""
    if not suite:
        return None

    def agree(m, a, params, now):
        ctx = getattr(a, "_sec", None)
        if ctx is None:
            return ActionResult.READ_WRITE_DENIED, None
        return keymod.key_agreement(m, e, suite, params, now, ctx.client_title)
    return agree


def _certificates(suite: int):
    def get(m, a, now):
        return keymod.certificate_info(keymod.pki(m, suite, m.clock(now)))
    return get


def _pki_method(name: str, suite: int):
    """Security setup v1 methods 4-8 (suites 1 and 2 only: suite 0 has no public keys)."""
    if not suite:
        return None

    def method(m, a, params, now):
        return getattr(keymod, name)(m, suite, params, m.clock(now))
    return method


def _security_activate(e: int):
    def activate(m, a, params, now):
        # security_activate(enum policy): IS 15959 meters run with the policy fixed per association;
        # asking for the policy in force is accepted, any other is refused.
        if params is None or params.tag is not DataType.ENUM:
            return ActionResult.TYPE_UNMATCHED, None
        return (ActionResult.SUCCESS if params.value == a.spec.policy or e != a.spec.setup
                else ActionResult.OTHER_REASON), None
    return activate


def _key_transfer(e: int):
    def transfer(m, a, params, now):
        return keymod.key_transfer(m, e, params, now)
    return transfer
