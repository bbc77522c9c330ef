"""COSEM interface classes: class id, version, attribute and method tables (IEC 62056-6-2 clause 4).

Only the tables live here; what each attribute holds in a given meter is bound in
`meter_core.cosem.model`. Names follow the Blue Book as implemented by the public stacks cited in
shared/reference/dlms-is15959-facts.md section 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class AccessMode(IntEnum):
    """Attribute access_mode in an object_list entry, Association LN v0-v2 (IEC 62056-6-2 4.4.3)."""

    NO_ACCESS = 0
    READ_ONLY = 1
    WRITE_ONLY = 2
    READ_AND_WRITE = 3
    AUTHENTICATED_READ_ONLY = 4
    AUTHENTICATED_WRITE_ONLY = 5
    AUTHENTICATED_READ_AND_WRITE = 6

    @property
    def readable(self) -> bool:
        return self in _READABLE

    @property
    def writable(self) -> bool:
        return self in _WRITABLE


_READABLE = frozenset(
    {AccessMode.READ_ONLY, AccessMode.READ_AND_WRITE, AccessMode.AUTHENTICATED_READ_ONLY,
     AccessMode.AUTHENTICATED_READ_AND_WRITE}
)
_WRITABLE = frozenset(
    {AccessMode.WRITE_ONLY, AccessMode.READ_AND_WRITE, AccessMode.AUTHENTICATED_WRITE_ONLY,
     AccessMode.AUTHENTICATED_READ_AND_WRITE}
)


class MethodAccessMode(IntEnum):
    """Method access_mode in an object_list entry, Association LN v1-v2 (IEC 62056-6-2 4.4.3)."""

    NO_ACCESS = 0
    ACCESS = 1
    AUTHENTICATED_ACCESS = 2


@dataclass(frozen=True, slots=True)
class InterfaceClass:
    """One COSEM interface class: its id, version and the names of its attributes and methods."""

    class_id: int
    version: int
    name: str
    attributes: tuple[str, ...]
    methods: tuple[str, ...] = ()

    @property
    def attribute_count(self) -> int:
        return len(self.attributes)

    @property
    def method_count(self) -> int:
        return len(self.methods)


DATA = InterfaceClass(1, 0, "Data", ("logical_name", "value"))
REGISTER = InterfaceClass(3, 0, "Register", ("logical_name", "value", "scaler_unit"), ("reset",))
EXTENDED_REGISTER = InterfaceClass(
    4, 0, "Extended register",
    ("logical_name", "value", "scaler_unit", "status", "capture_time"),
    ("reset",),
)
DEMAND_REGISTER = InterfaceClass(
    5, 0, "Demand register",
    ("logical_name", "current_average_value", "last_average_value", "scaler_unit", "status",
     "capture_time", "start_time_current", "period", "number_of_periods"),
    ("reset", "next_period"),
)
PROFILE_GENERIC = InterfaceClass(
    7, 1, "Profile generic",
    ("logical_name", "buffer", "capture_objects", "capture_period", "sort_method", "sort_object",
     "entries_in_use", "profile_entries"),
    ("reset", "capture"),
)
CLOCK = InterfaceClass(
    8, 0, "Clock",
    ("logical_name", "time", "time_zone", "status", "daylight_savings_begin", "daylight_savings_end",
     "daylight_savings_deviation", "daylight_savings_enabled", "clock_base"),
    ("adjust_to_quarter", "adjust_to_measuring_period", "adjust_to_minute", "adjust_to_preset_time",
     "preset_adjusting_time", "shift_time"),
)
ASSOCIATION_LN = InterfaceClass(
    15, 1, "Association LN",
    ("logical_name", "object_list", "associated_partners_id", "application_context_name",
     "xDLMS_context_info", "authentication_mechanism_name", "secret", "association_status",
     "security_setup_reference"),
    ("reply_to_HLS_authentication", "change_HLS_secret", "add_object", "remove_object"),
)
SAP_ASSIGNMENT = InterfaceClass(
    17, 0, "SAP assignment", ("logical_name", "SAP_assignment_list"), ("connect_logical_device",)
)
IEC_HDLC_SETUP = InterfaceClass(
    23, 1, "IEC HDLC setup",
    ("logical_name", "comm_speed", "window_size_transmit", "window_size_receive",
     "max_info_field_length_transmit", "max_info_field_length_receive", "inter_octet_time_out",
     "inactivity_time_out", "device_address"),
)
TCP_UDP_SETUP = InterfaceClass(
    41, 0, "TCP-UDP setup",
    ("logical_name", "TCP-UDP_port", "IP_reference", "maximum_segment_size",
     "maximum_simultaneous_connections", "inactivity_time_out"),
)
SECURITY_SETUP = InterfaceClass(
    64, 1, "Security setup",
    ("logical_name", "security_policy", "security_suite", "client_system_title", "server_system_title",
     "certificates"),
    ("security_activate", "key_transfer", "key_agreement", "generate_key_pair", "generate_certificate_request",
     "import_certificate", "export_certificate", "remove_certificate"),
)

SCRIPT_TABLE = InterfaceClass(9, 0, "Script table", ("logical_name", "scripts"), ("execute",))
ACTIVITY_CALENDAR = InterfaceClass(
    20, 0, "Activity calendar",
    ("logical_name", "calendar_name_active", "season_profile_active", "week_profile_table_active",
     "day_profile_table_active", "calendar_name_passive", "season_profile_passive", "week_profile_table_passive",
     "day_profile_table_passive", "activate_passive_calendar_time"),
    ("activate_passive_calendar",),
)
SINGLE_ACTION_SCHEDULE = InterfaceClass(
    22, 0, "Single action schedule", ("logical_name", "executed_script", "type", "execution_time")
)
PUSH_SETUP = InterfaceClass(
    40, 1, "Push setup",
    ("logical_name", "push_object_list", "send_destination_and_method", "communication_window",
     "randomisation_start_interval", "number_of_retries", "repetition_delay", "port_reference", "push_client_SAP",
     "push_protection_parameters"),
    ("push",),
)
# Version 2 (push_operation_method, confirmation_parameters, last_confirmation_date_time; reset()): the
# push setups a fleet configures for confirmed pushes.
PUSH_SETUP_V2 = InterfaceClass(
    40, 2, "Push setup",
    (*PUSH_SETUP.attributes, "push_operation_method", "confirmation_parameters", "last_confirmation_date_time"),
    ("push", "reset"),
)
DISCONNECT_CONTROL = InterfaceClass(
    70, 0, "Disconnect control", ("logical_name", "output_state", "control_state", "control_mode"),
    ("remote_disconnect", "remote_reconnect"),
)
LIMITER = InterfaceClass(
    71, 0, "Limiter",
    ("logical_name", "monitored_value", "threshold_active", "threshold_normal", "threshold_emergency",
     "min_over_threshold_duration", "min_under_threshold_duration", "emergency_profile",
     "emergency_profile_group_id_list", "emergency_profile_active", "actions"),
)

CLASSES: dict[int, InterfaceClass] = {
    c.class_id: c
    for c in (DATA, REGISTER, EXTENDED_REGISTER, DEMAND_REGISTER, PROFILE_GENERIC, CLOCK, SCRIPT_TABLE,
              ASSOCIATION_LN, SAP_ASSIGNMENT, ACTIVITY_CALENDAR, SINGLE_ACTION_SCHEDULE, IEC_HDLC_SETUP, PUSH_SETUP,
              TCP_UDP_SETUP, SECURITY_SETUP, DISCONNECT_CONTROL, LIMITER)
}


class Unit(IntEnum):
    """Physical units of scaler_unit (IEC 62056-6-2 clause 4.3.2, Table 4), the ones a meter uses."""

    YEAR = 1
    MONTH = 2
    WEEK = 3
    DAY = 4
    HOUR = 5
    MINUTE = 6
    SECOND = 7
    PHASE_ANGLE_DEGREE = 8
    CELSIUS = 9
    CURRENCY = 10
    WATT = 27
    VOLT_AMPERE = 28
    VAR = 29
    WATT_HOUR = 30
    VOLT_AMPERE_HOUR = 31
    VAR_HOUR = 32
    AMPERE = 33
    VOLT = 35
    HERTZ = 44
    PERCENTAGE = 56
    OTHER = 254
    COUNT = 255
