"""The zoo's benchmarks (`make bench`, `python -m bench.run_all`).

The package imports the zoo first, so every benchmark runs with the
TensorFlow defaults a user's `import zoo` gives (`zoo.runtime`: oneDNN), and
quiets TensorFlow's C++ INFO and WARNING logs unless `TF_CPP_MIN_LOG_LEVEL`
is set.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo  # noqa: E402, F401
