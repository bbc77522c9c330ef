"""Code lists of the xDLMS and ACSE services (IEC 62056-5-3 clause 8 ASN.1; DLMS UA Green Book).

Values are those of the ASN.1 modules as implemented by the public stacks cited in
IEC 62056-5-3 as Gurux (enums) and dlms-cosem implement it.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class ApduTag(IntEnum):
    """First byte of an xDLMS or ACSE APDU (IEC 62056-5-3 clause 8.3, xDLMS-APDU CHOICE)."""

    INITIATE_REQUEST = 0x01
    INITIATE_RESPONSE = 0x08
    CONFIRMED_SERVICE_ERROR = 0x0E
    DATA_NOTIFICATION = 0x0F
    DATA_NOTIFICATION_CONFIRM = 0x10
    GLO_INITIATE_REQUEST = 0x21
    GLO_INITIATE_RESPONSE = 0x28
    DED_INITIATE_REQUEST = 0x41
    DED_INITIATE_RESPONSE = 0x48
    AARQ = 0x60
    AARE = 0x61
    RLRQ = 0x62
    RLRE = 0x63
    GET_REQUEST = 0xC0
    SET_REQUEST = 0xC1
    EVENT_NOTIFICATION_REQUEST = 0xC2
    ACTION_REQUEST = 0xC3
    GET_RESPONSE = 0xC4
    SET_RESPONSE = 0xC5
    ACTION_RESPONSE = 0xC7
    GLO_GET_REQUEST = 0xC8
    GLO_SET_REQUEST = 0xC9
    GLO_EVENT_NOTIFICATION_REQUEST = 0xCA
    GLO_ACTION_REQUEST = 0xCB
    GLO_GET_RESPONSE = 0xCC
    GLO_SET_RESPONSE = 0xCD
    GLO_ACTION_RESPONSE = 0xCF
    DED_GET_REQUEST = 0xD0
    DED_SET_REQUEST = 0xD1
    DED_EVENT_NOTIFICATION_REQUEST = 0xD2
    DED_ACTION_REQUEST = 0xD3
    DED_GET_RESPONSE = 0xD4
    DED_SET_RESPONSE = 0xD5
    DED_ACTION_RESPONSE = 0xD7
    EXCEPTION_RESPONSE = 0xD8
    ACCESS_REQUEST = 0xD9
    ACCESS_RESPONSE = 0xDA
    GENERAL_GLO_CIPHERING = 0xDB
    GENERAL_DED_CIPHERING = 0xDC
    GENERAL_CIPHERING = 0xDD
    GENERAL_SIGNING = 0xDF
    GENERAL_BLOCK_TRANSFER = 0xE0


# Invoke-Id-And-Priority (IEC 62056-5-3 clause 8.3): bit 7 priority, bit 6 service class, bits 0-3 the invoke-id.
PRIORITY_HIGH = 0x80
SERVICE_CLASS_CONFIRMED = 0x40
INVOKE_ID_MASK = 0x0F
# Long-Invoke-Id-And-Priority (Data-Notification, clause 8.3): bit 31 priority, bit 30 service class, bits 0-23 the id.
LONG_SERVICE_CLASS_CONFIRMED = 0x40000000
LONG_INVOKE_ID_MASK = 0xFFFFFF


class DataAccessResult(IntEnum):
    """Data-Access-Result (IEC 62056-5-3 clause 8.3, COSEMpdu ASN.1)."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_GET_ABORTED = 15
    NO_LONG_GET_IN_PROGRESS = 16
    LONG_SET_ABORTED = 17
    NO_LONG_SET_IN_PROGRESS = 18
    DATA_BLOCK_NUMBER_INVALID = 19
    OTHER_REASON = 250


class ActionResult(IntEnum):
    """Action-Result (IEC 62056-5-3 clause 8.3); shares its codes with Data-Access-Result."""

    SUCCESS = 0
    HARDWARE_FAULT = 1
    TEMPORARY_FAILURE = 2
    READ_WRITE_DENIED = 3
    OBJECT_UNDEFINED = 4
    OBJECT_CLASS_INCONSISTENT = 9
    OBJECT_UNAVAILABLE = 11
    TYPE_UNMATCHED = 12
    SCOPE_OF_ACCESS_VIOLATED = 13
    DATA_BLOCK_UNAVAILABLE = 14
    LONG_ACTION_ABORTED = 15
    NO_LONG_ACTION_IN_PROGRESS = 16
    OTHER_REASON = 250


class GetRequestChoice(IntEnum):
    """Get-Request CHOICE (IEC 62056-5-3 clause 8.3)."""

    NORMAL = 1
    NEXT = 2
    WITH_LIST = 3


class GetResponseChoice(IntEnum):
    """Get-Response CHOICE (IEC 62056-5-3 clause 8.3)."""

    NORMAL = 1
    WITH_DATABLOCK = 2
    WITH_LIST = 3


class SetRequestChoice(IntEnum):
    """Set-Request CHOICE (IEC 62056-5-3 clause 8.3)."""

    NORMAL = 1
    WITH_FIRST_DATABLOCK = 2
    WITH_DATABLOCK = 3
    WITH_LIST = 4
    WITH_LIST_AND_FIRST_DATABLOCK = 5


class SetResponseChoice(IntEnum):
    """Set-Response CHOICE (IEC 62056-5-3 clause 8.3)."""

    NORMAL = 1
    DATABLOCK = 2
    LAST_DATABLOCK = 3
    LAST_DATABLOCK_WITH_LIST = 4
    WITH_LIST = 5


class ActionRequestChoice(IntEnum):
    """Action-Request CHOICE (IEC 62056-5-3 clause 8.3)."""

    NORMAL = 1
    NEXT_PBLOCK = 2
    WITH_LIST = 3
    WITH_FIRST_PBLOCK = 4
    WITH_LIST_AND_FIRST_PBLOCK = 5
    WITH_PBLOCK = 6


class ActionResponseChoice(IntEnum):
    """Action-Response CHOICE (IEC 62056-5-3 clause 8.3)."""

    NORMAL = 1
    WITH_PBLOCK = 2
    WITH_LIST = 3
    NEXT_PBLOCK = 4


class Conformance(IntFlag):
    """The 24-bit conformance block (IEC 62056-5-3 clause 8.3, Conformance BIT STRING (SIZE(24))).

    Bit n of the ASN.1 BIT STRING is the most significant bit first, so bit n has the value
    1 << (23 - n) in the integer formed by the three octets in wire order.
    """

    RESERVED_ZERO = 1 << 23
    GENERAL_PROTECTION = 1 << 22
    GENERAL_BLOCK_TRANSFER = 1 << 21
    READ = 1 << 20
    WRITE = 1 << 19
    UNCONFIRMED_WRITE = 1 << 18
    DELTA_VALUE_ENCODING = 1 << 17
    RESERVED_SEVEN = 1 << 16
    ATTRIBUTE0_SUPPORTED_WITH_SET = 1 << 15
    PRIORITY_MGMT_SUPPORTED = 1 << 14
    ATTRIBUTE0_SUPPORTED_WITH_GET = 1 << 13
    BLOCK_TRANSFER_WITH_GET_OR_READ = 1 << 12
    BLOCK_TRANSFER_WITH_SET_OR_WRITE = 1 << 11
    BLOCK_TRANSFER_WITH_ACTION = 1 << 10
    MULTIPLE_REFERENCES = 1 << 9
    INFORMATION_REPORT = 1 << 8
    DATA_NOTIFICATION = 1 << 7
    ACCESS = 1 << 6
    PARAMETERIZED_ACCESS = 1 << 5
    GET = 1 << 4
    SET = 1 << 3
    SELECTIVE_ACCESS = 1 << 2
    EVENT_NOTIFICATION = 1 << 1
    ACTION = 1 << 0


class ConfirmedServiceErrorChoice(IntEnum):
    """The service a ConfirmedServiceError refers to (IEC 62056-5-3 clause 8.3)."""

    INITIATE_ERROR = 1
    GET_STATUS = 2
    GET_NAME_LIST = 3
    GET_VARIABLE_ATTRIBUTE = 4
    READ = 5
    WRITE = 6
    GET_DATA_SET_ATTRIBUTE = 7
    GET_TI_ATTRIBUTE = 8
    CHANGE_SCOPE = 9
    START = 10
    STOP = 11
    RESUME = 12
    MAKE_USABLE = 13
    INITIATE_LOAD = 14
    LOAD_SEGMENT = 15
    TERMINATE_LOAD = 16
    INITIATE_UPLOAD = 17
    UPLOAD_SEGMENT = 18
    TERMINATE_UPLOAD = 19


class ServiceErrorType(IntEnum):
    """The ServiceError CHOICE of a ConfirmedServiceError (IEC 62056-5-3 clause 8.3)."""

    APPLICATION_REFERENCE = 0
    HARDWARE_RESOURCE = 1
    VDE_STATE_ERROR = 2
    SERVICE = 3
    DEFINITION = 4
    ACCESS = 5
    INITIATE = 6
    LOAD_DATA_SET = 7
    CHANGE_SCOPE = 8
    TASK = 9
    OTHER = 10


class InitiateError(IntEnum):
    """initiate errors of ServiceError (IEC 62056-5-3 clause 8.3)."""

    OTHER = 0
    DLMS_VERSION_TOO_LOW = 1
    INCOMPATIBLE_CONFORMANCE = 2
    PDU_SIZE_TOO_SHORT = 3
    REFUSED_BY_THE_VDE_HANDLER = 4


class ApplicationContextName(IntEnum):
    """Last arc of the application context OID 2.16.756.5.8.1.x (IEC 62056-5-3 clause 7.3.7.1)."""

    LOGICAL_NAME = 1
    SHORT_NAME = 2
    LOGICAL_NAME_WITH_CIPHERING = 3
    SHORT_NAME_WITH_CIPHERING = 4


class AuthenticationMechanism(IntEnum):
    """Last arc of the mechanism name OID 2.16.756.5.8.2.x (IEC 62056-5-3 clause 7.3.7.2)."""

    NONE = 0
    LOW = 1
    HIGH = 2
    HIGH_MD5 = 3
    HIGH_SHA1 = 4
    HIGH_GMAC = 5
    HIGH_SHA256 = 6
    HIGH_ECDSA = 7


class AssociationResult(IntEnum):
    """Association-result of the AARE (ISO/IEC 8650-1, IEC 62056-5-3 clause 7.3.7.1)."""

    ACCEPTED = 0
    REJECTED_PERMANENT = 1
    REJECTED_TRANSIENT = 2


class AcseServiceUser(IntEnum):
    """acse-service-user diagnostics of the AARE (ISO/IEC 8650-1; IEC 62056-5-3 clause 7.3.7.1)."""

    NULL = 0
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 2
    CALLING_AP_TITLE_NOT_RECOGNIZED = 3
    CALLING_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 4
    CALLING_AE_QUALIFIER_NOT_RECOGNIZED = 5
    CALLING_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 6
    CALLED_AP_TITLE_NOT_RECOGNIZED = 7
    CALLED_AP_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 8
    CALLED_AE_QUALIFIER_NOT_RECOGNIZED = 9
    CALLED_AE_INVOCATION_IDENTIFIER_NOT_RECOGNIZED = 10
    AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED = 11
    AUTHENTICATION_MECHANISM_NAME_REQUIRED = 12
    AUTHENTICATION_FAILURE = 13
    AUTHENTICATION_REQUIRED = 14


class AcseServiceProvider(IntEnum):
    """acse-service-provider diagnostics of the AARE (ISO/IEC 8650-1)."""

    NULL = 0
    NO_REASON_GIVEN = 1
    NO_COMMON_ACSE_VERSION = 2


class ReleaseRequestReason(IntEnum):
    """Release-request-reason of the RLRQ (ISO/IEC 8650-1)."""

    NORMAL = 0
    URGENT = 1
    USER_DEFINED = 30


class ReleaseResponseReason(IntEnum):
    """Release-response-reason of the RLRE (ISO/IEC 8650-1)."""

    NORMAL = 0
    NOT_FINISHED = 1
    USER_DEFINED = 30
