"""Developer tools: the load generator, the benchmarks, the demo."""
