//! End-to-end tests: real pipelines on small data, run through the real binary.
