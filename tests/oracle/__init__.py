"""Independent references the tests (and the benchmarks) compare the project against."""
