"""Helpers the test files share; the fixtures are in tests/conftest.py.

tests/ is on sys.path when pytest runs (tests/conftest.py is imported from there), so a
test file in any folder below it imports `support.<module>`."""
