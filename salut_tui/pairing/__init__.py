"""Node identity, pairing codes, the pairing protocol (PAKE + signed confirmation) and the
trust store of paired peers."""
