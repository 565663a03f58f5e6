"""Decision rules: pure functions over plain data. No I/O and no clock reads: ``now`` is always passed in."""
