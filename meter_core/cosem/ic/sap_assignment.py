"""SAP assignment (class 17)."""

from __future__ import annotations

from meter_core.codec.axdr import Data, DataType, encode_value
from meter_core.codec.obis import ln
from meter_core.cosem import is15959 as cat
from meter_core.cosem.model import Attribute, CosemObject, InterfaceClass, ln_attribute
from meter_core.device.meter import Meter

SAP_ASSIGNMENT = InterfaceClass(
    17, 0, "SAP assignment", ("logical_name", "SAP_assignment_list"), ("connect_logical_device",)
)


def sap_assignment() -> CosemObject:
    def assignment_list(m: Meter, a, now):
        # SAP_assignment_list ::= array { structure { SAP long-unsigned, logical_device_name octet-string } }
        return encode_value(Data(DataType.ARRAY, (Data(DataType.STRUCTURE, (
            Data(DataType.LONG_UNSIGNED, 1),
            Data(DataType.OCTET_STRING, m.identity.logical_device_name.encode("ascii")),
        )),)))

    return CosemObject(
        SAP_ASSIGNMENT, ln(cat.SAP_ASSIGNMENT), "SAP assignment",
        (ln_attribute(ln(cat.SAP_ASSIGNMENT)), Attribute(assignment_list)),
        (None,),
    )
