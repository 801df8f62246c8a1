//! Integration tests: vault.
