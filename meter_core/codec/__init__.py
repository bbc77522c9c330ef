"""The codec floor: bytes and the values they carry, with no meter behind them.

A-XDR (`axdr`), OBIS names (`obis`), the TCP wrapper (`wrapper`), HDLC (`hdlc`), the ACSE and xDLMS APDUs
with their ciphered envelopes (`apdu`), the cryptography of DLMS security suites 0 to 2 (`crypto`) and the
errors every floor above raises (`errors`). It imports nothing of meter_core above it.
"""
