"""Around the product: the benchmark, the demo database generator and generated vectors."""
