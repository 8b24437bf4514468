"""The app's server: the authorize proxy, the page, and the embedded voice pipeline.

numpy's bundled OpenBLAS starts one helper thread per core for a matrix product and leaves them
spin-waiting after it. The server's only products worth threading are the turn-end model's
features (a mel filterbank over 8 s, endpointing.py), tens of times a second under load, among
sessions that need the same two cores: measured (bench/cpu.py), one thread made the features
4 ms of CPU instead of 23 and the model's look 61 ms instead of 98. So one thread, unless the
environment says otherwise; it must be set before numpy loads, and this package is imported
first (`python -m server`). Worker processes inherit it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
