"""``make bench``: every performance figure of the connector, measured side by side in one run.

``python -m benchmarks.run [--quick]`` starts a broker and emulators, produces the workload once
and measures each figure (one module per figure), then rewrites the generated part of
BENCHMARKS.md and docs/benchmarks.png.
"""
