"""Load a SQLMesh project through SQLMesh's Python API and nothing else.

Used by bench/compare.sh and quoted in BENCHMARKS.md:

    python bench/sqlmesh_load.py /path/to/project

Reads, renders and validates every model (and reads the seed files), the
SQLMesh counterpart of `hubforge-bench load` and `dbt parse`.
"""

import sys

from sqlmesh import Context

Context(paths=sys.argv[1])
