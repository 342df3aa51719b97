"""Test harnesses and fakes shared by tests/ and bench/ (never shipped in the package)."""
