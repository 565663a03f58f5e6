"""The unit tests: a package only so that its conftest.py is ``unit.conftest`` (see conftest.py here)."""
