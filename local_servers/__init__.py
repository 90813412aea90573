"""The real servers the tests and the benches both start on 127.0.0.1: coglet, ComfyUI's own server, moto's S3,
PostgreSQL, a Range file server, a webhook receiver, the farm's worker and gateway processes.

One copy for both: bench/ may not import tests/ (the suite's helpers move with the suite), and the suite
should not reach into measurement scripts either, so these live in a package of their own that neither owns.
Each is stopped by whoever started it, by its process group; nothing here is shipped in the product.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
