"""ibgwd benchmarks: relay, time to ready, failure detection, footprint and scale (issue 11)."""
