"""Benchmarks of the platform against the libraries it wraps and its peers (`make bench`)."""
