//! Empty library: the tests live in `tests/`.
