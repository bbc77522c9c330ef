"""COSEM interface classes, one module each: the class's id, version, attribute and method table
(IEC 62056-6-2 clause 4) and its bindings, the functions that build the objects of that class a meter
has and answer their reads, writes and methods. `meter_core.cosem.build` puts them together per meter
kind. Names follow the Blue Book (IEC 62056-6-2) as Gurux's GXDLMS object classes and dlms-cosem
implement it.
"""
