"""Training-step throughput: jaxreg against PyTorch (`python -m benchmarks --help`)."""
